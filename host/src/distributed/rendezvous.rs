//! A small TCP rendezvous on `MASTER_ADDR:MASTER_PORT`, for launchers without MPI
//! (`torchrun`-style): rank 0 listens and hands every other rank the same bytes (the
//! NCCL unique id), so the ranks can then open a communicator of their own.
//!
//! Protocol: a joining rank sends `NHRV`, its rank and the world size (big-endian u32
//! each); rank 0 checks them and answers with the payload's length (u32) and bytes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{CommError, World};

const MAGIC: &[u8; 4] = b"NHRV";

fn failure(message: String) -> CommError {
    CommError::Backend { backend: "rendezvous", message }
}

/// Rank 0 sends `payload` to every other rank; the others receive it. `master` is
/// `host:port`. Joining ranks retry until rank 0 listens.
///
/// # Errors
/// No `master` address, an address that cannot be bound or resolved, a peer that sends
/// something else or claims another world size or a rank seen twice, or the deadline.
pub fn exchange(world: &World, master: Option<&str>, payload: &[u8], timeout: Duration) -> Result<Vec<u8>, CommError> {
    if world.size == 1 {
        return Ok(payload.to_vec());
    }
    let master = master.ok_or_else(|| {
        failure(format!(
            "{} started {} processes without MPI: set MASTER_ADDR and MASTER_PORT to where rank 0 listens",
            world.launcher, world.size
        ))
    })?;
    let deadline = Instant::now() + timeout;
    if world.rank == 0 {
        serve(master, world.size, payload, deadline, timeout)?;
        Ok(payload.to_vec())
    } else {
        join(master, world, deadline, timeout)
    }
}

fn timed_out(op: &str, rank: usize, timeout: Duration) -> CommError {
    CommError::Timeout { rank, op: op.to_owned(), seconds: timeout.as_secs_f64() }
}

fn serve(master: &str, size: usize, payload: &[u8], deadline: Instant, timeout: Duration) -> Result<(), CommError> {
    let port = master.rsplit_once(':').map_or(master, |(_, p)| p);
    let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap_or(0)))
        .map_err(|e| failure(format!("rank 0 cannot listen on port {port} (MASTER_PORT): {e}")))?;
    listener.set_nonblocking(true).map_err(|e| failure(e.to_string()))?;
    let mut joined = BTreeSet::new();
    while joined.len() + 1 < size {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                stream.set_nonblocking(false).map_err(|e| failure(e.to_string()))?;
                let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                stream.set_read_timeout(Some(remaining)).map_err(|e| failure(e.to_string()))?;
                let mut hello = [0u8; 12];
                stream.read_exact(&mut hello).map_err(|e| failure(format!("{peer} did not introduce itself: {e}")))?;
                let rank = u32::from_be_bytes(hello[4..8].try_into().expect("4 bytes")) as usize;
                let their_size = u32::from_be_bytes(hello[8..12].try_into().expect("4 bytes")) as usize;
                if &hello[..4] != MAGIC {
                    return Err(failure(format!("{peer} is not a niftyhost rank (bad greeting on MASTER_PORT)")));
                }
                if their_size != size || rank == 0 || rank >= size || !joined.insert(rank) {
                    return Err(failure(format!(
                        "{peer} claims rank {rank} of {their_size}; rank 0 expects ranks 1..{size} once each"
                    )));
                }
                let mut answer = (payload.len() as u32).to_be_bytes().to_vec();
                answer.extend_from_slice(payload);
                stream.write_all(&answer).map_err(|e| failure(format!("sending to rank {rank} at {peer}: {e}")))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> = (1..size).filter(|r| !joined.contains(r)).collect();
                    return Err(timed_out(&format!("rendezvous (ranks {missing:?} never joined)"), 0, timeout));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(failure(format!("accepting on MASTER_PORT: {e}"))),
        }
    }
    Ok(())
}

fn join(master: &str, world: &World, deadline: Instant, timeout: Duration) -> Result<Vec<u8>, CommError> {
    let address = master
        .to_socket_addrs()
        .map_err(|e| failure(format!("MASTER_ADDR:MASTER_PORT = {master}: {e}")))?
        .next()
        .ok_or_else(|| failure(format!("MASTER_ADDR:MASTER_PORT = {master} resolves to no address")))?;
    let mut stream = loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                return Err(timed_out(
                    &format!("rendezvous with rank 0 at {master} (last error: {e})"),
                    world.rank,
                    timeout,
                ))
            }
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining)).map_err(|e| failure(e.to_string()))?;
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&(world.rank as u32).to_be_bytes());
    hello.extend_from_slice(&(world.size as u32).to_be_bytes());
    stream.write_all(&hello).map_err(|e| failure(format!("greeting rank 0 at {master}: {e}")))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| failure(format!("rank 0 at {master} closed the rendezvous without an answer: {e}")))?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).map_err(|e| failure(format!("reading the rendezvous payload: {e}")))?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::Launcher;

    fn rank(rank: usize, size: usize) -> World {
        World { launcher: Launcher::Torchrun, rank, size, local_rank: rank, master: None }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn every_rank_receives_rank_zeros_bytes() {
        let master = format!("127.0.0.1:{}", free_port());
        let id: Vec<u8> = (0..128u8).collect();
        let timeout = Duration::from_secs(20);
        let got: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|r| {
                    let (master, id) = (master.clone(), id.clone());
                    let payload = if r == 0 { id } else { Vec::new() };
                    s.spawn(move || exchange(&rank(r, 3), Some(&master), &payload, timeout).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|g| *g == id), "{got:?}");
    }

    #[test]
    fn a_rank_that_never_joins_ends_the_rendezvous_at_the_deadline() {
        let master = format!("127.0.0.1:{}", free_port());
        let started = Instant::now();
        let e = exchange(&rank(0, 3), Some(&master), b"id", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = e.to_string();
        assert!(text.contains("ranks [1, 2] never joined") && text.contains("dead or hung"), "{text}");
        let e = exchange(&rank(1, 2), Some(&master), b"", Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("rendezvous with rank 0"), "{e}");
    }

    #[test]
    fn no_master_address_is_a_clear_error() {
        let e = exchange(&rank(1, 2), None, b"", Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("MASTER_ADDR and MASTER_PORT"), "{e}");
    }
}
