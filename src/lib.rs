//! imlink keeps one instant-messaging account logged in on a Linux host.
pub mod codes;
pub mod usersig;
pub mod proto;
