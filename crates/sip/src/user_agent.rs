//! Glue between the sans-IO client pieces and the tokio driver: a registration kept alive over a
//! [`SipHandle`]. The application still owns the event stream and hands each event here; this
//! keeps the softphone's and the server's registration code to three calls.

use std::net::SocketAddr;
use std::time::Instant;

use crate::client::{Registration, RegistrationConfig, RegistrationEvent, RegistrationState};
use crate::driver::{DriverError, SipHandle};
use crate::endpoint::{Event, TransactionId};
use crate::msg::Message;
use crate::transport::TransportKind;

/// A [`Registration`] bound to a registrar address and a driver handle.
pub struct RegistrationTask {
    registration: Registration,
    transport: TransportKind,
    registrar: SocketAddr,
    pending: Option<(TransactionId, Message)>,
}

impl RegistrationTask {
    pub fn new(
        config: RegistrationConfig,
        transport: TransportKind,
        registrar: SocketAddr,
        now: Instant,
    ) -> RegistrationTask {
        RegistrationTask {
            registration: Registration::new(config, now),
            transport,
            registrar,
            pending: None,
        }
    }

    pub fn state(&self) -> RegistrationState {
        self.registration.state()
    }

    /// When [`RegistrationTask::poll`] should next run (refresh or retry).
    pub fn next_wake(&self) -> Option<Instant> {
        self.registration.poll_timeout()
    }

    /// Sends the REGISTER that is due, if any.
    pub async fn poll(&mut self, handle: &SipHandle, now: Instant) -> Result<(), DriverError> {
        if let Some(request) = self.registration.poll_request(now) {
            self.send(handle, request).await?;
        }
        Ok(())
    }

    async fn send(&mut self, handle: &SipHandle, request: Message) -> Result<(), DriverError> {
        let id = handle
            .send_request(request.clone(), self.transport, self.registrar)
            .await?;
        self.pending = Some((id, request));
        Ok(())
    }

    /// Offers an event from the driver; returns what it meant when it was ours.
    pub async fn handle_event(
        &mut self,
        handle: &SipHandle,
        event: &Event,
        now: Instant,
    ) -> Result<Option<RegistrationEvent>, DriverError> {
        let Some((pending_id, request)) = &self.pending else {
            return Ok(None);
        };
        match event {
            Event::Response { id, response } if id == pending_id => {
                let request = request.clone();
                match self.registration.handle_response(now, &request, response) {
                    RegistrationEvent::Send(next) => {
                        self.send(handle, next).await?;
                        Ok(None)
                    }
                    RegistrationEvent::Ignored => Ok(None),
                    other => {
                        self.pending = None;
                        Ok(Some(other))
                    }
                }
            }
            Event::Timeout { id, .. } | Event::TransportError { id } if id == pending_id => {
                self.pending = None;
                self.registration.handle_failure(now);
                Ok(Some(RegistrationEvent::Failed { status: 408 }))
            }
            _ => Ok(None),
        }
    }

    /// Removes the binding (Expires: 0); the answer arrives through `handle_event`.
    pub async fn unregister(&mut self, handle: &SipHandle) -> Result<(), DriverError> {
        let request = self.registration.unregister();
        self.send(handle, request).await
    }
}
