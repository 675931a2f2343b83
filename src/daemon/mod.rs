//! `imlinkd`: the actors.
