//! Agent state changes through santral's HTTP API (`PUT /api/v1/agents/{id}/state`, docs/http-api.md),
//! over a minimal HTTP/1.1 client: one request per connection, plain `http://` only.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::Command;

/// Replies larger than this are refused (the API answers a small JSON object).
const MAX_REPLY_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AgentControl {
    address: SocketAddr,
    host: String,
    token: String,
}

impl std::fmt::Debug for AgentControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentControl")
            .field("address", &self.address)
            .field("token", &"<hidden>")
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum AgentControlError {
    #[error("HTTP API URL must look like http://HOST:PORT, not {0:?}")]
    BadUrl(String),
    #[error("HTTP API at {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP API at {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("HTTP API answered something that is not HTTP")]
    BadReply,
    #[error("HTTP API refused the change with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("not an agent state command")]
    NotAgentCommand,
}

/// The server's answer to a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReply {
    /// The agent's new state as the server names it.
    pub state: String,
    pub body: String,
}

impl AgentControl {
    pub fn new(url: &str, token: &str) -> Result<AgentControl, AgentControlError> {
        let bad = || AgentControlError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let host = rest.trim_end_matches('/');
        let address = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map_err(|_| bad())?
            .next()
            .ok_or_else(bad)?;
        Ok(AgentControl {
            address,
            host: host.to_string(),
            token: token.to_string(),
        })
    }

    /// The JSON body for a state command.
    pub fn body_for(command: &Command) -> Result<String, AgentControlError> {
        let value = match command {
            Command::Login => serde_json::json!({"state": "login"}),
            Command::Logout => serde_json::json!({"state": "logout"}),
            Command::Ready => serde_json::json!({"state": "ready"}),
            Command::EndWrapUp => serde_json::json!({"state": "end-wrap-up"}),
            Command::Pause(reason) => serde_json::json!({"state": "pause", "reason": reason}),
            _ => return Err(AgentControlError::NotAgentCommand),
        };
        Ok(value.to_string())
    }

    pub async fn change_state(
        &self,
        agent: &str,
        command: &Command,
    ) -> Result<StateReply, AgentControlError> {
        let body = Self::body_for(command)?;
        let agent: String = agent
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let request = format!(
            "PUT /api/v1/agents/{agent}/state HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        let exchange = async {
            let mut stream = TcpStream::connect(self.address).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut reply = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await?;
                if n == 0 || reply.len() + n > MAX_REPLY_BYTES {
                    break;
                }
                reply.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(reply)
        };
        let reply = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| AgentControlError::Timeout(self.address))?
            .map_err(|e| AgentControlError::Io(self.address, e))?;
        parse_reply(&reply)
    }
}

/// Status line and body of an HTTP/1.1 reply (Content-Length or read-to-close bodies).
fn parse_reply(reply: &[u8]) -> Result<StateReply, AgentControlError> {
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(AgentControlError::BadReply)?;
    let status: u16 = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or(AgentControlError::BadReply)?;
    let body = body.trim().to_string();
    if !(200..300).contains(&status) {
        return Err(AgentControlError::Refused { status, body });
    }
    let state = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_default();
    Ok(StateReply { state, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_http_api() {
        assert_eq!(
            AgentControl::body_for(&Command::Pause("lunch".into())).unwrap(),
            r#"{"reason":"lunch","state":"pause"}"#
        );
        assert_eq!(
            AgentControl::body_for(&Command::EndWrapUp).unwrap(),
            r#"{"state":"end-wrap-up"}"#
        );
        assert!(AgentControl::body_for(&Command::Hold).is_err());
    }

    #[test]
    fn replies_are_parsed_and_refusals_reported() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"id\":\"2001\",\"state\":\"paused\"}";
        assert_eq!(parse_reply(ok).unwrap().state, "paused");
        let refused = b"HTTP/1.1 409 Conflict\r\n\r\n{\"error\":\"on a call\"}";
        assert!(matches!(
            parse_reply(refused),
            Err(AgentControlError::Refused { status: 409, .. })
        ));
        assert!(matches!(
            parse_reply(b"garbage"),
            Err(AgentControlError::BadReply)
        ));
        assert!(AgentControl::new("https://x", "t").is_err());
        assert!(AgentControl::new("http://127.0.0.1:8080/", "t").is_ok());
    }

    #[tokio::test]
    async fn state_change_goes_over_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"state\":\"ready\"}")
                .await
                .unwrap();
            request
        });
        let control = AgentControl::new(&format!("http://{address}"), "tok").unwrap();
        let reply = control.change_state("2001", &Command::Ready).await.unwrap();
        assert_eq!(reply.state, "ready");
        let request = server.await.unwrap();
        assert!(request.starts_with("PUT /api/v1/agents/2001/state HTTP/1.1\r\n"));
        assert!(request.contains("Authorization: Bearer tok\r\n"));
        assert!(request.ends_with(r#"{"state":"ready"}"#));
    }
}
