//! `imlinkctl`: the command-line client of the socket, and the UserSig tool.
