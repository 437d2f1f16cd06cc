//! The chatroom server (work in progress).
