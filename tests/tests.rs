//! End-to-end tests of the chatroom binaries.
