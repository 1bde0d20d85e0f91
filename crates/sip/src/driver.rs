//! The tokio driver: owns the sockets and the clock, feeds the sans-IO [`Endpoint`], and gives
//! the application an event stream and a cloneable handle to send with.
//!
//! One task owns the endpoint. UDP sockets and TCP connections have reader tasks that forward
//! bytes to it; TCP connections (accepted or opened on demand) have writer queues so responses
//! go back over the connection the request came in on. Stream connections are generic over
//! `AsyncRead + AsyncWrite`, so TLS and WebSocket (RFC 7118) can reuse them later.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::endpoint::{Endpoint, EndpointConfig, EndpointError, Event, TransactionId, Transmit};
use crate::msg::{Limits, Message};
use crate::transport::{Peer, StreamFramer, TransportKind};

/// Accepted stream connections at once; more wait in the listen backlog.
pub const MAX_STREAM_CONNECTIONS: usize = 4096;
/// A stream connection with no traffic either way for this long is closed.
pub const STREAM_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot bind {transport} {addr}: {source}")]
    Bind {
        transport: TransportKind,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("no {0} listener to send from")]
    NoListener(TransportKind),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the SIP driver has stopped")]
    Stopped,
}

enum Command {
    SendRequest {
        request: Message,
        transport: TransportKind,
        remote: SocketAddr,
        reply: oneshot::Sender<Result<TransactionId, DriverError>>,
    },
    Respond {
        id: TransactionId,
        response: Message,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Cancel {
        invite: TransactionId,
        reply: oneshot::Sender<Result<TransactionId, DriverError>>,
    },
    SendStateless {
        message: Message,
        transport: TransportKind,
        remote: SocketAddr,
    },
}

enum Inbound {
    Bytes {
        transport: TransportKind,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Vec<u8>,
    },
    ConnectionOpened {
        remote: SocketAddr,
        writer: mpsc::UnboundedSender<Outgoing>,
    },
    ConnectionClosed {
        remote: SocketAddr,
        undelivered: Vec<TransactionId>,
    },
}

struct Outgoing {
    bytes: Bytes,
    transaction: Option<TransactionId>,
}

/// Sends requests and responses through the driver. Cheap to clone; the driver stops when every
/// handle is dropped.
#[derive(Clone)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    listening: Arc<Vec<Listen>>,
}

impl SipHandle {
    /// The addresses actually bound (port 0 resolved).
    pub fn listening(&self) -> &[Listen] {
        &self.listening
    }

    /// The address we send from and advertise in Via/Contact for `transport`.
    pub fn local_addr(&self, transport: TransportKind) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    pub async fn send_request(
        &self,
        request: Message,
        transport: TransportKind,
        remote: SocketAddr,
    ) -> Result<TransactionId, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SendRequest {
                request,
                transport,
                remote,
                reply,
            })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub async fn respond(&self, id: TransactionId, response: Message) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Respond {
                id,
                response,
                reply,
            })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub async fn cancel(&self, invite: TransactionId) -> Result<TransactionId, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Cancel { invite, reply })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// ACK for a 2xx, or any message outside a transaction.
    pub fn send_stateless(
        &self,
        message: Message,
        transport: TransportKind,
        remote: SocketAddr,
    ) -> Result<(), DriverError> {
        self.commands
            .send(Command::SendStateless {
                message,
                transport,
                remote,
            })
            .map_err(|_| DriverError::Stopped)
    }
}

/// The application's side of the event stream.
pub struct SipEvents {
    rx: mpsc::Receiver<Event>,
}

impl SipEvents {
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Binds every listener and starts the driver task.
pub async fn start(
    config: EndpointConfig,
    listen: &[Listen],
) -> Result<(SipHandle, SipEvents), DriverError> {
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(4096);
    let mut udp = HashMap::new();
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    let limits = config.limits;
    for l in listen {
        let bind_err = |source| DriverError::Bind {
            transport: l.transport,
            addr: l.addr,
            source,
        };
        match l.transport {
            TransportKind::Udp => {
                let socket = Arc::new(UdpSocket::bind(l.addr).await.map_err(bind_err)?);
                let local = socket.local_addr().map_err(bind_err)?;
                tasks.push(tokio::spawn(udp_reader(
                    socket.clone(),
                    local,
                    inbound_tx.clone(),
                )));
                udp.insert(local, socket);
                bound.push(Listen {
                    transport: TransportKind::Udp,
                    addr: local,
                });
            }
            TransportKind::Tcp => {
                let listener = TcpListener::bind(l.addr).await.map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                tasks.push(tokio::spawn(tcp_acceptor(
                    listener,
                    local,
                    limits,
                    inbound_tx.clone(),
                )));
                bound.push(Listen {
                    transport: TransportKind::Tcp,
                    addr: local,
                });
            }
        }
    }
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::channel(4096);
    let listening = Arc::new(bound);
    let core = Core {
        endpoint: Endpoint::new(config),
        udp,
        connections: HashMap::new(),
        listening: listening.clone(),
        inbound_tx,
        limits,
        events: event_tx,
    };
    tokio::spawn(core.run(inbound_rx, command_rx, tasks));
    Ok((
        SipHandle {
            commands,
            listening,
        },
        SipEvents { rx: event_rx },
    ))
}

struct Core {
    endpoint: Endpoint,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    connections: HashMap<SocketAddr, mpsc::UnboundedSender<Outgoing>>,
    listening: Arc<Vec<Listen>>,
    inbound_tx: mpsc::Sender<Inbound>,
    limits: Limits,
    events: mpsc::Sender<Event>,
}

impl Core {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        tasks: Vec<JoinHandle<()>>,
    ) {
        loop {
            let wake = self.endpoint.poll_timeout();
            tokio::select! {
                Some(input) = inbound.recv() => self.handle_inbound(input),
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                _ = sleep_until(wake), if wake.is_some() => {
                    self.endpoint.handle_timeout(Instant::now());
                }
            }
            self.flush().await;
            if self.events.is_closed() {
                break;
            }
        }
        for task in tasks {
            task.abort();
        }
        tracing::debug!("SIP driver stopped");
    }

    fn local_for(&self, transport: TransportKind) -> Result<SocketAddr, DriverError> {
        self.listening
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
            .ok_or(DriverError::NoListener(transport))
    }

    fn handle_inbound(&mut self, input: Inbound) {
        match input {
            Inbound::Bytes {
                transport,
                local,
                remote,
                bytes,
            } => self
                .endpoint
                .handle_input(Instant::now(), transport, local, remote, &bytes),
            Inbound::ConnectionOpened { remote, writer } => {
                self.connections.insert(remote, writer);
            }
            Inbound::ConnectionClosed {
                remote,
                undelivered,
            } => {
                self.connections.remove(&remote);
                for id in undelivered {
                    self.endpoint.handle_transport_error(id);
                }
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::SendRequest {
                request,
                transport,
                remote,
                reply,
            } => {
                let result = self.local_for(transport).and_then(|local| {
                    let peer = Peer {
                        transport,
                        local,
                        remote,
                    };
                    Ok(self.endpoint.send_request(now, request, peer)?)
                });
                let _ = reply.send(result);
            }
            Command::Respond {
                id,
                response,
                reply,
            } => {
                let _ = reply.send(
                    self.endpoint
                        .respond(now, id, response)
                        .map_err(DriverError::from),
                );
            }
            Command::Cancel { invite, reply } => {
                let _ = reply.send(
                    self.endpoint
                        .send_cancel(now, invite)
                        .map_err(DriverError::from),
                );
            }
            Command::SendStateless {
                message,
                transport,
                remote,
            } => {
                if let Ok(local) = self.local_for(transport) {
                    self.endpoint.send_stateless(
                        message,
                        Peer {
                            transport,
                            local,
                            remote,
                        },
                    );
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            self.send(transmit).await;
        }
        while let Some(event) = self.endpoint.poll_event() {
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }

    async fn send(&mut self, transmit: Transmit) {
        let Transmit {
            peer,
            bytes,
            transaction,
        } = transmit;
        match peer.transport {
            TransportKind::Udp => {
                let socket = self
                    .udp
                    .get(&peer.local)
                    .or_else(|| self.udp.values().next())
                    .cloned();
                let failed = match socket {
                    Some(socket) => socket.send_to(&bytes, peer.remote).await.is_err(),
                    None => true,
                };
                if failed {
                    tracing::debug!(remote = %peer.remote, "UDP send failed");
                    if let Some(id) = transaction {
                        self.endpoint.handle_transport_error(id);
                    }
                }
            }
            TransportKind::Tcp => {
                let outgoing = Outgoing { bytes, transaction };
                let outgoing = match self.connections.get(&peer.remote) {
                    Some(writer) => match writer.send(outgoing) {
                        Ok(()) => return,
                        Err(mpsc::error::SendError(o)) => o,
                    },
                    None => outgoing,
                };
                // No live connection to that address: open one (RFC 3261 §18.2.2).
                let (writer, queue) = mpsc::unbounded_channel();
                let _ = writer.send(outgoing);
                self.connections.insert(peer.remote, writer);
                tokio::spawn(tcp_connect(
                    peer.remote,
                    peer.local,
                    self.limits,
                    queue,
                    self.inbound_tx.clone(),
                ));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

async fn udp_reader(socket: Arc<UdpSocket>, local: SocketAddr, inbound: mpsc::Sender<Inbound>) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((len, remote)) => {
                let input = Inbound::Bytes {
                    transport: TransportKind::Udp,
                    local,
                    remote,
                    bytes: buffer[..len].to_vec(),
                };
                if inbound.send(input).await.is_err() {
                    return;
                }
            }
            // ICMP port-unreachable surfaces as an error on some systems; keep reading.
            Err(error) => tracing::debug!(%error, "UDP receive error"),
        }
    }
}

async fn tcp_acceptor(
    listener: TcpListener,
    local: SocketAddr,
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_STREAM_CONNECTIONS));
    loop {
        // Bound the connections a peer (or many) can hold open.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, remote)) => {
                let (writer, queue) = mpsc::unbounded_channel();
                if inbound
                    .send(Inbound::ConnectionOpened { remote, writer })
                    .await
                    .is_err()
                {
                    return;
                }
                let inbound = inbound.clone();
                tokio::spawn(async move {
                    serve_connection(
                        stream,
                        TransportKind::Tcp,
                        local,
                        remote,
                        limits,
                        queue,
                        inbound,
                    )
                    .await;
                    drop(slot);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tcp_connect(
    remote: SocketAddr,
    local: SocketAddr,
    limits: Limits,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
) {
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        TcpStream::connect(remote),
    )
    .await;
    match connect {
        Ok(Ok(stream)) => {
            serve_connection(
                stream,
                TransportKind::Tcp,
                local,
                remote,
                limits,
                queue,
                inbound,
            )
            .await
        }
        _ => {
            tracing::debug!(%remote, "TCP connect failed");
            queue.close();
            let mut undelivered = Vec::new();
            while let Ok(o) = queue.try_recv() {
                undelivered.extend(o.transaction);
            }
            let _ = inbound
                .send(Inbound::ConnectionClosed {
                    remote,
                    undelivered,
                })
                .await;
        }
    }
}

/// Reads framed messages from a stream connection and writes queued messages to it.
async fn serve_connection<S>(
    stream: S,
    transport: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
    limits: Limits,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(limits);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut undelivered = Vec::new();
    let idle = tokio::time::sleep(STREAM_IDLE_TIMEOUT);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            _ = &mut idle => {
                tracing::debug!(%remote, "closing idle stream connection");
                break;
            }
            read = reader.read(&mut buffer) => {
                idle.as_mut().reset(tokio::time::Instant::now() + STREAM_IDLE_TIMEOUT);
                let len = match read {
                    Ok(0) | Err(_) => break,
                    Ok(len) => len,
                };
                framer.push(&buffer[..len]);
                let mut broken = false;
                // Bounded by the bytes just read: each message consumes at least one byte.
                for _ in 0..=len {
                    match framer.next_message() {
                        Ok(Some(bytes)) => {
                            let input = Inbound::Bytes { transport, local, remote, bytes };
                            if inbound.send(input).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::debug!(%remote, %error, "closing stream connection");
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    break;
                }
            }
            outgoing = queue.recv() => {
                let Some(outgoing) = outgoing else { break };
                idle.as_mut().reset(tokio::time::Instant::now() + STREAM_IDLE_TIMEOUT);
                if writer.write_all(&outgoing.bytes).await.is_err() {
                    undelivered.extend(outgoing.transaction);
                    break;
                }
            }
        }
    }
    queue.close();
    while let Ok(o) = queue.try_recv() {
        undelivered.extend(o.transaction);
    }
    let _ = inbound
        .send(Inbound::ConnectionClosed {
            remote,
            undelivered,
        })
        .await;
}
