//! Waiting for many SSH hosts to speak, from one thread.
//!
//! The first part of every probe is mostly waiting: connect, then wait for
//! the host's SSH identification line (`SSH-2.0-…`, RFC 4253 §4.2). [`listen`]
//! does that part for a whole fleet at once: a non-blocking connect to each
//! host, one epoll set over all the sockets, and each host's first bytes
//! *peeked* (`MSG_PEEK`), never consumed: libssh2 has no way to take an
//! identification line that was already read, so it reads it again in its own
//! handshake. Each host has its own deadline, its probe timeout counted from
//! its own start. Only a host that spoke is handed on (placement gives it a
//! thread: the `ssh2` handshake blocks); a silent fleet costs this one thread
//! and one socket per host in flight ([`super::slots`] bounds those).
//!
//! epoll rather than poll(2): a wake-up costs the events it reports, not the
//! sockets watched, so 10,000 hosts answering one after another stay linear.
//! Edge-triggered: a peeked byte stays unread, so a level-triggered set would
//! report the same socket again at once; edge-triggered, it is reported again
//! when more arrives.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};

use super::slots::{Slot, Slots};
use crate::ssh::{self, SshFailure};
use crate::types::{RejectCode, SshTarget};

/// What became of one host before its deadline.
pub enum Heard<'s> {
    /// It spoke: its identification line waits in `stream`, unread. (Or it
    /// closed the connection, reset it or sent a NUL: libssh2 refuses those
    /// at once, and its handshake says so in the words it always used.)
    /// The probe goes on within `deadline`, holding `slot` until it is done
    /// with the socket.
    Spoke { stream: TcpStream, deadline: Instant, slot: Slot<'s> },
    /// Rejected without a handshake: its name does not resolve, its port
    /// refuses or never answers, it stayed silent until its deadline, or it
    /// sent more than an SSH server would before its identification line.
    Failed(SshFailure),
}

/// The most a host may send before its identification line ends: what
/// libssh2 reads as one line. RFC 4253 allows lines before it; not this many.
pub const MAX_BEFORE_IDENTIFICATION: usize = 8192;

/// A connect that meets `EMFILE` (descriptors taken by something else than
/// the probes) waits this long and tries again, this many times: agentplane's
/// limit is never the host's fault.
const EMFILE_PAUSE: Duration = Duration::from_millis(50);
const EMFILE_TRIES: u32 = 20;

/// How often to look again for a freed slot or a resolver's answer, which
/// arrive on no socket.
const TICK: Duration = Duration::from_millis(10);

/// Events taken per wait.
const BATCH: usize = 1024;

/// Connect to every host in `hosts` (the caller's index, the target) and wait
/// for each to speak, each within `timeout` from its own start, no more at
/// once than `slots` allows; tell `heard` what became of each. (The slot of
/// a host rejected here is given back here, never waited for: several loops
/// may share `slots`.)
pub fn listen<'s>(
    hosts: &[(usize, &SshTarget)],
    timeout: Duration,
    slots: &'s Slots,
    mut heard: impl FnMut(usize, Heard<'s>),
) {
    let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(e) => e,
        Err(e) => {
            // Agentplane's failure, not the hosts': none of them is blamed.
            for &(i, t) in hosts {
                heard(i, Heard::Failed(not_probed(t, &format!("cannot watch sockets: {e}"))));
            }
            return;
        }
    };
    let mut fleet = Fleet::new(epoll, timeout);
    let mut pending: VecDeque<(usize, &SshTarget, u32)> = hosts.iter().map(|&(i, t)| (i, t, 0)).collect();
    let mut events = vec![EpollEvent::empty(); BATCH];
    let mut buf = vec![0u8; MAX_BEFORE_IDENTIFICATION];
    let mut paused_until: Option<Instant> = None;
    loop {
        // Start as many as there are slots for (never between the events of
        // one batch: a key freed there is not reused before the next wait).
        if paused_until.is_none_or(|t| Instant::now() >= t) {
            paused_until = None;
            while let Some(&(i, target, tries)) = pending.front() {
                let Some(slot) = slots.try_take() else { break };
                pending.pop_front();
                match fleet.start(i, target, slot) {
                    Ok(Some(h)) => heard(i, h),
                    Ok(None) => {}
                    Err(OutOfDescriptors { addr, error }) => {
                        if tries + 1 >= EMFILE_TRIES {
                            heard(i, Heard::Failed(ssh::unreachable(target, ssh::connect_failed(&addr, &error))));
                        } else {
                            pending.push_front((i, target, tries + 1));
                            paused_until = Some(Instant::now() + EMFILE_PAUSE);
                            break;
                        }
                    }
                }
            }
        }
        if pending.is_empty() && fleet.is_empty() {
            return;
        }
        // Sleep until the next deadline, or a tick when waiting for a slot, a
        // resolver or the end of a pause.
        let now = Instant::now();
        let mut wake = fleet.next_deadline().unwrap_or(now + TICK);
        if !pending.is_empty() || fleet.resolving > 0 {
            wake = wake.min(paused_until.unwrap_or(now + TICK).max(now).min(now + TICK));
        }
        let n = match fleet.epoll.wait(&mut events, wait_for(wake.saturating_duration_since(now))) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                // Cannot wait on the sockets any more: agentplane's failure.
                let why = format!("cannot wait on sockets: {e}");
                for (i, target) in fleet.abandon() {
                    heard(i, Heard::Failed(not_probed(target, &why)));
                }
                for (i, target, _) in pending.drain(..) {
                    heard(i, Heard::Failed(not_probed(target, &why)));
                }
                return;
            }
        };
        for ev in &events[..n] {
            if let Some((i, h)) = fleet.on_event(ev.data() as usize, ev.events(), &mut buf) {
                heard(i, h);
            }
        }
        while let Some((i, h)) = fleet.on_resolved() {
            heard(i, h);
        }
        while let Some((i, h)) = fleet.expire(Instant::now()) {
            heard(i, h);
        }
    }
}

/// Agentplane could not probe `target`: [`RejectCode::ProbeFailed`], never
/// recorded as the host's fault.
fn not_probed(target: &SshTarget, why: &str) -> SshFailure {
    SshFailure::new(RejectCode::ProbeFailed, format!("{}: not probed: {why}", ssh::display_target(target)))
}

/// An epoll timeout of at least `d`, rounded up to the millisecond (rounded
/// down, a wait would end just before the deadline and spin).
fn wait_for(d: Duration) -> EpollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128);
    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
}

/// Where a host is.
enum Stage {
    /// Its name is being resolved on a helper thread.
    Resolving,
    /// A connect to `addrs[at]` is under way.
    Connecting { addrs: Vec<SocketAddr>, at: usize, stream: TcpStream },
    /// Connected: waiting for its identification line.
    Waiting { stream: TcpStream },
}

/// One host in flight.
struct Host<'t, 's> {
    index: usize,
    target: &'t SshTarget,
    deadline: Instant,
    /// Which start this is (a key is reused once its host is done).
    serial: u64,
    slot: Slot<'s>,
    stage: Stage,
}

/// A resolver thread's answer: key, serial, addresses.
type Resolved = (usize, u64, Result<Vec<SocketAddr>, String>);

/// The socket could not be opened: this process has no descriptor to spare.
struct OutOfDescriptors {
    addr: SocketAddr,
    error: std::io::Error,
}

/// The hosts in flight, keyed by their place in `hosts` (the epoll data).
struct Fleet<'t, 's> {
    epoll: Epoll,
    timeout: Duration,
    hosts: Vec<Option<Host<'t, 's>>>,
    free: Vec<usize>,
    live: usize,
    serial: u64,
    /// (deadline, key, serial) in start order: one timeout for all and a
    /// monotonic clock, so the deadlines come in order too.
    deadlines: VecDeque<(Instant, usize, u64)>,
    resolving: usize,
    resolved_tx: mpsc::Sender<Resolved>,
    resolved_rx: mpsc::Receiver<Resolved>,
}

/// What a finished host hands back: the caller's index and the verdict.
type Done<'s> = (usize, Heard<'s>);

impl<'t, 's> Fleet<'t, 's> {
    fn new(epoll: Epoll, timeout: Duration) -> Self {
        let (resolved_tx, resolved_rx) = mpsc::channel();
        Fleet {
            epoll,
            timeout,
            hosts: Vec::new(),
            free: Vec::new(),
            live: 0,
            serial: 0,
            deadlines: VecDeque::new(),
            resolving: 0,
            resolved_tx,
            resolved_rx,
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|d| d.0)
    }

    /// Start probing `target`: its deadline starts now. `Ok(Some)` when it is
    /// already decided (a bad name, a refused connect).
    fn start(
        &mut self,
        index: usize,
        target: &'t SshTarget,
        slot: Slot<'s>,
    ) -> Result<Option<Heard<'s>>, OutOfDescriptors> {
        let deadline = Instant::now() + self.timeout;
        if let Err(why) = ssh::check_host_name(&target.host) {
            return Ok(Some(Heard::Failed(ssh::unreachable(target, why))));
        }
        self.serial += 1;
        let serial = self.serial;
        let key = self.free.pop().unwrap_or_else(|| {
            self.hosts.push(None);
            self.hosts.len() - 1
        });
        let stage = if let Some(addr) = ssh::ip_literal(&target.host, target.port) {
            match self.connect(key, &[addr], 0) {
                Ok(stage) => stage,
                Err(Refused::NoDescriptor(error)) => {
                    self.free.push(key);
                    return Err(OutOfDescriptors { addr, error });
                }
                Err(Refused::Host(failure)) => {
                    self.free.push(key);
                    return Ok(Some(failure.into_heard(target)));
                }
            }
        } else {
            let tx = self.resolved_tx.clone();
            let (host, port) = (target.host.clone(), target.port);
            let spawned =
                std::thread::Builder::new().name("ssh-resolve".into()).stack_size(64 * 1024).spawn(move || {
                    let _ = tx.send((key, serial, ssh::lookup(&host, port)));
                });
            if let Err(e) = spawned {
                self.free.push(key);
                let why = format!("cannot start a resolver thread: {e}");
                return Ok(Some(Heard::Failed(ssh::unreachable(target, why))));
            }
            self.resolving += 1;
            Stage::Resolving
        };
        self.hosts[key] = Some(Host { index, target, deadline, serial, slot, stage });
        self.live += 1;
        self.deadlines.push_back((deadline, key, serial));
        Ok(None)
    }

    /// Open a socket, start a non-blocking connect to `addrs[at]` (or the
    /// next address that does not refuse at once) and watch it.
    fn connect(&mut self, key: usize, addrs: &[SocketAddr], mut at: usize) -> Result<Stage, Refused> {
        loop {
            let addr = addrs[at];
            let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
            let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
                .map_err(|e| match e {
                Errno::EMFILE => Refused::NoDescriptor(e.into()),
                e => Refused::Host(ConnectFailure::Failed(addr, e.into())),
            })?;
            let stream = TcpStream::from(fd);
            match socket::connect(stream.as_raw_fd(), &SockaddrStorage::from(addr)) {
                Ok(()) | Err(Errno::EINPROGRESS) => {
                    let flags =
                        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
                    self.epoll
                        .add(&stream, EpollEvent::new(flags, key as u64))
                        .map_err(|e| Refused::Host(ConnectFailure::CannotWatch(e.into())))?;
                    return Ok(Stage::Connecting { addrs: addrs.to_vec(), at, stream });
                }
                Err(e) if at + 1 == addrs.len() => return Err(Refused::Host(ConnectFailure::Failed(addr, e.into()))),
                Err(_) => at += 1,
            }
        }
    }

    /// Something happened on `key`'s socket.
    fn on_event(&mut self, key: usize, flags: EpollFlags, buf: &mut [u8]) -> Option<Done<'s>> {
        let host = self.hosts.get_mut(key)?.as_mut()?;
        if let Stage::Connecting { addrs, at, stream } = &host.stage {
            if !flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                return None;
            }
            let failed = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => None,
                    // Not connected yet after all: wait for the next event.
                    Err(e) if e.kind() == ErrorKind::NotConnected => return None,
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = failed {
                let (addrs, at) = (addrs.clone(), *at);
                let _ = self.epoll.delete(stream);
                if at + 1 < addrs.len() {
                    // The next address, within the same deadline.
                    return match self.connect(key, &addrs, at + 1) {
                        Ok(stage) => {
                            self.hosts[key].as_mut()?.stage = stage;
                            None
                        }
                        Err(Refused::NoDescriptor(e)) => self.finish(key, |t| {
                            Heard::Failed(ssh::unreachable(t, ssh::connect_failed(&addrs[at + 1], &e)))
                        }),
                        Err(Refused::Host(f)) => self.finish(key, |t| f.into_heard(t)),
                    };
                }
                return self.finish(key, |t| Heard::Failed(ssh::unreachable(t, ssh::connect_failed(&addrs[at], &e))));
            }
            let Host { stage, .. } = self.hosts[key].as_mut()?;
            let Stage::Connecting { stream, .. } = std::mem::replace(stage, Stage::Resolving) else {
                return None;
            };
            *stage = Stage::Waiting { stream };
        }
        // Connected (just now, perhaps, with the line already there): look.
        let Some(Host { stage: Stage::Waiting { stream }, .. }) = self.hosts[key].as_ref() else { return None };
        match peek(stream, buf) {
            Look::Wait => None,
            Look::Spoke => {
                let host = self.take(key)?;
                let Stage::Waiting { stream } = host.stage else { return None };
                Some((host.index, Heard::Spoke { stream, deadline: host.deadline, slot: host.slot }))
            }
            Look::TooMuch => self.finish(key, |t| {
                Heard::Failed(ssh::unreachable(
                    t,
                    format!(
                        "not an SSH server: it sent {MAX_BEFORE_IDENTIFICATION} bytes and no SSH identification line (`SSH-…`)"
                    ),
                ))
            }),
        }
    }

    /// A resolver thread answered.
    fn on_resolved(&mut self) -> Option<Done<'s>> {
        loop {
            let (key, serial, result) = self.resolved_rx.try_recv().ok()?;
            self.resolving -= 1;
            // Its host may have run out of time meanwhile (and the key gone to another).
            if self.hosts.get(key).and_then(Option::as_ref).is_none_or(|h| h.serial != serial) {
                continue;
            }
            // Too late: `expire` says the resolver timed out, as it did.
            if self.hosts[key].as_ref().is_some_and(|h| Instant::now() >= h.deadline) {
                continue;
            }
            let addrs = match result {
                Ok(addrs) => addrs,
                Err(why) => return self.finish(key, |t| Heard::Failed(ssh::unreachable(t, why))),
            };
            match self.connect(key, &addrs, 0) {
                Ok(stage) => self.hosts[key].as_mut()?.stage = stage,
                Err(Refused::NoDescriptor(e)) => {
                    return self
                        .finish(key, |t| Heard::Failed(ssh::unreachable(t, ssh::connect_failed(&addrs[0], &e))));
                }
                Err(Refused::Host(f)) => return self.finish(key, |t| f.into_heard(t)),
            }
        }
    }

    /// The next host whose deadline has passed by `now`, rejected for it.
    fn expire(&mut self, now: Instant) -> Option<Done<'s>> {
        while let Some(&(deadline, key, serial)) = self.deadlines.front() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop_front();
            if self.hosts.get(key).and_then(Option::as_ref).is_none_or(|h| h.serial != serial) {
                continue; // done before its deadline
            }
            let host = self.take(key)?;
            let why = match &host.stage {
                Stage::Resolving => ssh::resolve_timed_out(&host.target.host),
                Stage::Connecting { addrs, at, .. } => ssh::connect_timed_out(&addrs[*at]),
                Stage::Waiting { .. } => ssh::no_banner_in_time(ssh::WAIT_TIMED_OUT),
            };
            return Some((host.index, Heard::Failed(ssh::unreachable(host.target, why))));
        }
        None
    }

    /// Take `key`'s host out of the fleet (and its socket out of the epoll set).
    fn take(&mut self, key: usize) -> Option<Host<'t, 's>> {
        let host = self.hosts.get_mut(key)?.take()?;
        match &host.stage {
            Stage::Resolving => {}
            Stage::Connecting { stream, .. } | Stage::Waiting { stream } => {
                let _ = self.epoll.delete(stream);
            }
        }
        self.free.push(key);
        self.live -= 1;
        Some(host)
    }

    /// `key`'s host is decided: `verdict` of its target. (Its slot is given
    /// back: the host is done with.)
    fn finish(&mut self, key: usize, verdict: impl FnOnce(&SshTarget) -> Heard<'s>) -> Option<Done<'s>> {
        let host = self.take(key)?;
        Some((host.index, verdict(host.target)))
    }

    /// Give up on every host in flight.
    fn abandon(&mut self) -> Vec<(usize, &'t SshTarget)> {
        (0..self.hosts.len()).filter_map(|k| self.take(k)).map(|h| (h.index, h.target)).collect()
    }
}

/// Why a connect could not start.
enum Refused {
    /// No descriptor for the socket: agentplane's limit, tried again later.
    NoDescriptor(std::io::Error),
    Host(ConnectFailure),
}

enum ConnectFailure {
    /// The host refused, or there is no route to it.
    Failed(SocketAddr, std::io::Error),
    /// The socket could not be added to the epoll set.
    CannotWatch(std::io::Error),
}

impl ConnectFailure {
    fn into_heard<'s>(self, target: &SshTarget) -> Heard<'s> {
        Heard::Failed(match self {
            ConnectFailure::Failed(addr, e) => ssh::unreachable(target, ssh::connect_failed(&addr, &e)),
            ConnectFailure::CannotWatch(e) => not_probed(target, &format!("cannot watch its socket: {e}")),
        })
    }
}

/// What a peek at a connected host's first bytes says.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Nothing decisive yet.
    Wait,
    /// Its identification line is complete (or the connection ended, or it
    /// sent what libssh2 refuses at once: the handshake reports it).
    Spoke,
    /// [`MAX_BEFORE_IDENTIFICATION`] bytes and no identification line.
    TooMuch,
}

/// Peek (never consume) what `stream` has received.
fn peek(stream: &TcpStream, buf: &mut [u8]) -> Look {
    loop {
        return match stream.peek(buf) {
            Ok(0) => Look::Spoke,
            Ok(n) => scan(&buf[..n], buf.len()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Look::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset: the handshake meets it and says so.
            Err(_) => Look::Spoke,
        };
    }
}

/// Whether `bytes`, the first a host sent, hold its identification line: a
/// line starting `SSH-` and ended by `\n` (lines before it are allowed, as
/// libssh2 allows them), or a NUL (libssh2 refuses a banner holding one).
/// `limit`: when `bytes` are this many and hold none, the host sent too much.
fn scan(bytes: &[u8], limit: usize) -> Look {
    if bytes.contains(&0) {
        return Look::Spoke;
    }
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        let start = line.iter().position(|&b| b != b'\r').unwrap_or(line.len());
        if line[start..].starts_with(b"SSH-") {
            return Look::Spoke;
        }
        rest = &rest[end + 1..];
    }
    if bytes.len() >= limit { Look::TooMuch } else { Look::Wait }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn the_identification_line_is_found_after_other_lines_and_only_when_ended() {
        let table: [(&[u8], Look); 9] = [
            (b"", Look::Wait),
            (b"SSH-2.0-OpenSSH_9.6", Look::Wait),
            (b"SSH-2.0-OpenSSH_9.6\r\n", Look::Spoke),
            (b"SSH-2.0-x\n", Look::Spoke),
            (b"\r\nSSH-2.0-x\r\n", Look::Spoke),
            (b"welcome\r\nplease wait\r\nSSH-2.0-x\r\n", Look::Spoke),
            (b"welcome\r\nSSH-2.0-partial", Look::Wait),
            (b"not-ssh \x00", Look::Spoke),
            (b"xSSH-2.0-x\n", Look::Wait),
        ];
        for (bytes, want) in table {
            assert_eq!(scan(bytes, 64), want, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(scan(&[b'x'; 64], 64), Look::TooMuch);
        assert_eq!(scan(&[b'\n'; 64], 64), Look::TooMuch);
    }

    fn target(port: u16) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "nobody".into(),
            identity_file: "/nonexistent".into(),
            known_hosts_file: "/nonexistent".into(),
        }
    }

    /// A listener that sends `greeting` to whoever connects, then holds the
    /// connection open (or, with `None`, closes it at once).
    fn host(greeting: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            match greeting {
                // A reader that never reads: more than the socket buffers
                // hold must not block the test, so send what fits.
                Some(g) => {
                    s.set_nonblocking(true).unwrap();
                    let _ = s.write(g);
                    std::thread::sleep(Duration::from_secs(3));
                }
                None => drop(s),
            }
        });
        (port, h)
    }

    fn outcomes(targets: &[SshTarget], timeout: Duration, slots: usize) -> Vec<Result<String, SshFailure>> {
        let slots = Slots::new(slots);
        let hosts: Vec<(usize, &SshTarget)> = targets.iter().enumerate().collect();
        let mut got: Vec<Option<Result<String, SshFailure>>> = targets.iter().map(|_| None).collect();
        listen(&hosts, timeout, &slots, |i, heard| {
            assert!(got[i].is_none(), "{i} heard twice");
            got[i] = Some(match heard {
                Heard::Spoke { stream, .. } => {
                    let mut buf = [0u8; 64];
                    let n = stream.peek(&mut buf).unwrap_or(0);
                    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
                }
                Heard::Failed(f) => Err(f),
            });
        });
        got.into_iter().map(|g| g.expect("every host is heard of")).collect()
    }

    #[test]
    fn each_host_is_judged_by_what_it_sent() {
        let garbage: &'static [u8] = Box::leak(vec![b'x'; MAX_BEFORE_IDENTIFICATION + 100].into_boxed_slice());
        let hosts = [
            host(Some(b"SSH-2.0-test\r\n")),
            host(Some(b"")),
            host(Some(b"SSH-2.0-parti")),
            host(Some(garbage)),
            host(None),
        ];
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut targets: Vec<SshTarget> = hosts.iter().map(|(p, _)| target(*p)).collect();
        targets.push(target(closed));
        let mut bad_name = target(22);
        bad_name.host = "bad host".into();
        targets.push(bad_name);
        let got = outcomes(&targets, Duration::from_millis(800), 100);

        // It spoke: the line is still there for libssh2 to read.
        assert_eq!(got[0].as_ref().unwrap(), "SSH-2.0-test\r\n");
        // Silent, or a line begun and never ended: silence.
        for g in &got[1..3] {
            let f = g.as_ref().unwrap_err();
            assert_eq!(f.code, RejectCode::SshUnreachable, "{f}");
            assert!(
                f.detail.ends_with("no SSH banner or handshake within the timeout (Timed out waiting on socket)"),
                "{f}"
            );
        }
        // An endless first line: read no further than the bound.
        let f = got[3].as_ref().unwrap_err();
        assert_eq!(f.code, RejectCode::SshUnreachable, "{f}");
        assert!(f.detail.contains("not an SSH server") && f.detail.contains("8192 bytes"), "{f}");
        // Closed at once: handed on, for the handshake to say so.
        assert_eq!(got[4].as_ref().unwrap(), "");
        let f = got[5].as_ref().unwrap_err();
        assert_eq!(f.code, RejectCode::SshUnreachable, "{f}");
        assert!(f.detail.contains("cannot connect to 127.0.0.1:") && f.detail.contains("refused"), "{f}");
        let f = got[6].as_ref().unwrap_err();
        assert!(f.detail.contains("invalid host name"), "{f}");
    }

    #[test]
    fn with_fewer_slots_than_hosts_each_host_still_gets_its_own_deadline() {
        // Silent hosts: the kernel completes the handshake, nobody speaks.
        let listeners: Vec<TcpListener> = (0..6).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let targets: Vec<SshTarget> = listeners.iter().map(|l| target(l.local_addr().unwrap().port())).collect();
        let got = outcomes(&targets, Duration::from_millis(200), 2);
        for g in got {
            let f = g.unwrap_err();
            assert!(f.detail.ends_with("(Timed out waiting on socket)"), "{f}");
        }
    }

    #[test]
    fn a_name_is_resolved_off_the_loop() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut t = target(l.local_addr().unwrap().port());
        t.host = "localhost".into();
        let mut nowhere = target(22);
        nowhere.host = "no-such-host.invalid".into();
        let got = outcomes(&[t, nowhere], Duration::from_millis(300), 10);
        let f = got[0].as_ref().unwrap_err();
        assert!(
            f.detail.ends_with("(Timed out waiting on socket)") || f.detail.contains("cannot connect"),
            "localhost resolves and connects: {f}"
        );
        let f = got[1].as_ref().unwrap_err();
        assert_eq!(f.code, RejectCode::SshUnreachable, "{f}");
        assert!(f.detail.contains("no-such-host.invalid"), "{f}");
    }
}
