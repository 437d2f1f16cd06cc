//! The firmware client in the room: proto-core compiled for a Cortex-M3, run by QEMU
//! (`lm3s6965evb`) with the board's UART0 connected to a real `host-server` over
//! loopback TCP, chats with a plain text client.
//!
//! How the firmware and the server are built and QEMU is run: see
//! [`firmware_util`](crate::firmware_util).

use crate::firmware_util::{build_firmware, build_host_server, require_tools, Qemu, TextClient};
use crate::util::Server;

#[test]
fn firmware_joins_the_room_and_chats_with_a_text_client() {
    require_tools();
    let firmware = build_firmware("room");
    let server = Server::start_binary(&build_host_server(), "127.0.0.1:0", &[]);
    let addr = server.addr;
    let mut text = TextClient::connect(addr);
    text.expect("the text client's welcome", |l| l.starts_with("*** "));

    let serial = format!("tcp:{addr}");
    let mut qemu = Qemu::start(&firmware, ["-serial", serial.as_str()]);
    let joined = qemu.0.out.expect("`room: joined as ADDR`", |l| {
        l.starts_with("room: joined as ")
    });
    let firmware_addr = joined["room: joined as ".len()..].to_owned();
    text.expect_eq(&format!("[{firmware_addr}] hello from cortex-m"));

    let me = text.local_addr();
    text.send("hello from the host");
    qemu.0.out.expect_eq(&format!("[{me}] hello from the host"));
    text.send("bye firmware");
    qemu.0.out.expect_eq(&format!("[{me}] bye firmware"));
    qemu.0.out.expect_eq("room: said bye");
    let status = qemu.wait_exit();
    assert!(
        status.success(),
        "the firmware exited with {status}; stdout {:#?} stderr {:#?}",
        qemu.0.out.all(),
        qemu.0.err.all()
    );
    // Shown with `--nocapture`: the firmware's stack figures are on its last lines.
    println!("firmware output: {:#?}", qemu.0.out.all());
    // The server got the firmware's bye frame and told the room.
    text.expect_eq(&format!("*** {firmware_addr} left"));
}
