//! `imlink-devserver`: the emulator of the IM access server.
