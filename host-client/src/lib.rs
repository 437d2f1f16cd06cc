//! The chatroom client (work in progress).
