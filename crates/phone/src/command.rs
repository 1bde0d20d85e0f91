//! The commands an agent (or a script on stdin in `--no-tui` mode) gives the phone.

use santral_media::DtmfDigit;
use thiserror::Error;

/// One thing the agent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Answer,
    /// Hang up a call in progress, cancel an outgoing one, or reject a ringing one.
    Hangup,
    Dial(String),
    Dtmf(Vec<DtmfDigit>),
    Hold,
    Resume,
    Mute,
    Unmute,
    /// Blind transfer (REFER) of the current call to a number or SIP URI.
    Transfer(String),
    Login,
    Logout,
    Ready,
    Pause(String),
    EndWrapUp,
    Status,
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("empty command")]
    Empty,
    #[error(
        "unknown command {0:?} (answer, hangup, dial N, dtmf D, hold, resume, mute, unmute, transfer T, login, logout, ready, pause R, wrapup, status, quit)"
    )]
    Unknown(String),
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    #[error("not a DTMF key: {0:?} (0-9, *, #, A-D)")]
    BadDigit(char),
    #[error("not a dialable target: {0:?}")]
    BadTarget(String),
}

/// A dial or transfer target: digits, `*#+`, or a `sip:` URI without spaces or angle brackets.
fn target(argument: &str) -> Result<String, CommandError> {
    let ok_number = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | '+'));
    let ok_uri = argument.starts_with("sip:")
        && argument.len() > 4
        && !argument
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
    if ok_number || ok_uri {
        Ok(argument.to_string())
    } else {
        Err(CommandError::BadTarget(argument.to_string()))
    }
}

impl Command {
    /// Parses one line such as `dial 1000`, `dtmf 12#` or `pause lunch`.
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let line = line.trim();
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((word, rest)) => (word, rest.trim()),
            None => (line, ""),
        };
        let needs = |name: &'static str| {
            if rest.is_empty() {
                Err(CommandError::MissingArgument(name))
            } else {
                Ok(rest)
            }
        };
        match word.to_ascii_lowercase().as_str() {
            "" => Err(CommandError::Empty),
            "answer" | "a" => Ok(Command::Answer),
            "hangup" | "h" | "reject" => Ok(Command::Hangup),
            "dial" | "call" | "d" => Ok(Command::Dial(target(needs("dial")?)?)),
            "dtmf" => {
                let digits = needs("dtmf")?
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .map(|c| DtmfDigit::from_char(c).ok_or(CommandError::BadDigit(c)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Command::Dtmf(digits))
            }
            "hold" => Ok(Command::Hold),
            "resume" | "unhold" => Ok(Command::Resume),
            "mute" => Ok(Command::Mute),
            "unmute" => Ok(Command::Unmute),
            "transfer" | "xfer" => Ok(Command::Transfer(target(needs("transfer")?)?)),
            "login" => Ok(Command::Login),
            "logout" => Ok(Command::Logout),
            "ready" => Ok(Command::Ready),
            "pause" => Ok(Command::Pause(needs("pause")?.to_string())),
            "wrapup" | "end-wrap-up" => Ok(Command::EndWrapUp),
            "status" => Ok(Command::Status),
            "quit" | "exit" | "q" => Ok(Command::Quit),
            other => Err(CommandError::Unknown(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_line_mode_commands() {
        assert_eq!(Command::parse(" answer "), Ok(Command::Answer));
        assert_eq!(
            Command::parse("dial 1000"),
            Ok(Command::Dial("1000".into()))
        );
        assert_eq!(
            Command::parse("transfer sip:2002@127.0.0.1"),
            Ok(Command::Transfer("sip:2002@127.0.0.1".into()))
        );
        assert_eq!(
            Command::parse("dtmf 1 2#"),
            Ok(Command::Dtmf(
                "12#".chars().filter_map(DtmfDigit::from_char).collect()
            ))
        );
        assert_eq!(
            Command::parse("pause lunch break"),
            Ok(Command::Pause("lunch break".into()))
        );
        assert_eq!(Command::parse("QUIT"), Ok(Command::Quit));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert_eq!(Command::parse(""), Err(CommandError::Empty));
        assert_eq!(
            Command::parse("dial"),
            Err(CommandError::MissingArgument("dial"))
        );
        assert_eq!(Command::parse("dtmf 1x"), Err(CommandError::BadDigit('x')));
        assert!(matches!(
            Command::parse("dial 10 00"),
            Err(CommandError::BadTarget(_))
        ));
        assert!(matches!(
            Command::parse("transfer sip:a@b>;x"),
            Err(CommandError::BadTarget(_))
        ));
        assert!(matches!(
            Command::parse("fly"),
            Err(CommandError::Unknown(_))
        ));
    }
}
