//! Binding, sharing with Pingora's table, and taking sockets over through Pingora's real
//! transfer.

use super::*;

#[test]
fn a_tunnel_socket_shared_in_the_table_is_handed_over_by_pingora_and_accepts_here() {
    // The old process: a tunnel listener shared with Pingora's table, and a TCP route
    // listener the new config no longer has.
    let bind_own = |role| {
        let b = bind_or_inherit("127.0.0.1:0".parse().unwrap(), "test", role, None).unwrap();
        (b.addr, b.table_key(), b.into_std().unwrap())
    };
    let (addr, key, tunnel) = bind_own(Role::Tunnel);
    assert_eq!(key, format!("tunnel:{addr}"));
    let (stray_addr, stray_key, stray) = bind_own(Role::TcpRoute);
    assert_eq!(stray_key, format!("tcp_route:{stray_addr}"));
    let table: ListenFds =
        std::sync::Arc::new(parking_lot::Mutex::new(pingora::server::Fds::new()));
    share(&table, key.clone(), &tunnel).unwrap();
    // Shared again (a second service start): the table keeps its first descriptor.
    share(&table, key, &tunnel).unwrap();
    share(&table, stray_key, &stray).unwrap();
    assert_eq!(table.lock().serialize().0.len(), 2);
    // The old process stops accepting: the sockets live on in the table.
    drop((tunnel, stray));

    // Pingora sends its table on SIGQUIT; the new process receives it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let sender = std::thread::spawn({
        let (table, path) = (table.clone(), path.clone());
        move || {
            // Pingora's sender retries (1 s apart) until the receiver listens.
            let text = path.to_str().unwrap().to_owned();
            table.lock().send_to_sock(text.as_str()).unwrap();
        }
    });
    let mut inherited = Inherited::receive(&path).unwrap();
    sender.join().unwrap();
    // The old process exits: only the new process holds the sockets now.
    table
        .lock()
        .close_unclaimed(&std::collections::HashSet::new());

    // Claimed by address, whatever role it had; a second claim binds afresh (and fails:
    // the socket is still listening).
    let new = bind_or_inherit(addr, "tunnel.listen", Role::Tunnel, Some(&mut inherited)).unwrap();
    assert!(bind_or_inherit(addr, "again", Role::TcpRoute, Some(&mut inherited)).is_err());
    inherited.close_unclaimed();
    let listener = new.into_std().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    // Non-blocking: accept until the connection is there (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        match listener.accept() {
            Ok((_, peer)) => break peer,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nothing accepted");
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(accepted, client.local_addr().unwrap());
    // The unclaimed socket was closed, and the table's copy of it is gone: nothing listens.
    assert!(std::net::TcpStream::connect(stray_addr).is_err());
}

#[test]
fn nothing_sent_in_time_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let err = Inherited::receive(&path).unwrap_err().to_string();
    assert!(err.contains("nothing connected within 6 s"), "{err}");
    assert!(!path.exists(), "the socket file is removed");
    let err = Inherited::receive(&dir.path().join("missing/upgrade.sock"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("its directory does not exist"), "{err}");
}

#[test]
fn port_zero_gets_a_real_port_that_stays_bound() {
    let first = bind("127.0.0.1:0".parse().unwrap(), "test").unwrap();
    let second = bind("127.0.0.1:0".parse().unwrap(), "test").unwrap();
    assert_ne!(first.addr.port(), 0);
    assert_ne!(first.addr, second.addr);
    // Still bound: binding the same port again fails with its address in the message.
    let err = bind(first.addr, "admin").unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {} (admin): ", first.addr)),
        "{err}"
    );
}
