//! `sharecast message encode|decode`: the share-message codecs on the
//! command line (see `docs/share-messages.md`).
//!
//! - `encode` reads video attributes (JSON) and prints the SMS-SUBMIT PDUs
//!   (TS 27.005 PDU-mode hex, SMSC field first), one per line.
//! - `decode` takes one or more SMS-DELIVER or SMS-SUBMIT PDUs in hex (in
//!   any order; parts of concatenated messages are reassembled) and prints
//!   the attributes of each complete message as JSON. Anything it cannot
//!   read is an error naming the PDU and the byte at fault, and the exit
//!   status is non-zero.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sharecast_client_sdk::recipient::{PushOutcome, Reassembler};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::sms::TypeOfNumber;
use sharecast_formats::share::{
    encode_submit_pdus, Address, MessageOptions, ShareFormat, SubmitOptions,
};

/// Share-message format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Sharecast TLV, 8-bit SMS to port 16029.
    Tlv,
    /// XML video document as a text SMS.
    Xml,
    /// Human-readable text: share link first, then §-delimited fields.
    Text,
    /// WAP Push Service Indication (SI).
    WapSi,
    /// WAP Push Service Loading (SL).
    WapSl,
    /// WAP Push of the WBXML video document.
    WapVideo,
}

impl From<FormatArg> for ShareFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Tlv => ShareFormat::Tlv,
            FormatArg::Xml => ShareFormat::Xml,
            FormatArg::Text => ShareFormat::Text,
            FormatArg::WapSi => ShareFormat::WapSi,
            FormatArg::WapSl => ShareFormat::WapSl,
            FormatArg::WapVideo => ShareFormat::WapVideo,
        }
    }
}

/// `sharecast message ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MessageCmd {
    /// Encode video attributes as SMS-SUBMIT PDUs, printed as hex, one a line.
    Encode {
        /// Message format.
        #[arg(long, value_enum)]
        format: FormatArg,
        /// Recipient number, e.g. +8613800138000.
        #[arg(long)]
        to: String,
        /// Video attributes as JSON (`-` reads standard input). Missing
        /// fields take their defaults.
        #[arg(long, value_name = "FILE.json")]
        attributes: PathBuf,
        /// Service centre number; omitted, the phone's default SMSC is used.
        #[arg(long)]
        smsc: Option<String>,
        /// Concatenation reference (default: derived from the content, so
        /// different messages get different references).
        #[arg(long)]
        reference: Option<u16>,
        /// Use 16-bit concatenation references (IEI 0x08).
        #[arg(long)]
        wide_reference: bool,
        /// Include the renditions (TLV, XML and WAP video formats).
        #[arg(long)]
        renditions: bool,
        /// TP-MR of the first PDU.
        #[arg(long, default_value_t = 0)]
        message_ref: u8,
    },
    /// Decode SMS PDUs (hex) and print the video attributes as JSON.
    Decode {
        /// PDUs in hex: separate arguments, or several per argument split by
        /// whitespace; `-` reads them from standard input.
        #[arg(required = true, value_name = "HEX")]
        pdus: Vec<String>,
    },
}

/// Run a `message` subcommand.
pub(crate) fn run(cmd: MessageCmd) -> Result<()> {
    match cmd {
        MessageCmd::Encode {
            format,
            to,
            attributes,
            smsc,
            reference,
            wide_reference,
            renditions,
            message_ref,
        } => {
            let json = read_input(&attributes)?;
            let attrs = parse_attributes(&json)
                .with_context(|| format!("reading attributes from {}", attributes.display()))?;
            let to = recipient_number(&to)?;
            let smsc = smsc
                .map(|s| Address::parse(&s).with_context(|| format!("--smsc {s:?}")))
                .transpose()?;
            let opts = MessageOptions {
                include_renditions: renditions,
                reference: reference.unwrap_or_else(|| content_reference(json.as_bytes())),
                wide_reference,
                submit: SubmitOptions {
                    smsc,
                    message_ref,
                    ..SubmitOptions::default()
                },
                ..MessageOptions::default()
            };
            let format = ShareFormat::from(format);
            let pdus = encode_submit_pdus(&attrs, format, &to, &opts)
                .with_context(|| format!("encoding as {format}"))?;
            for p in pdus {
                emit(&hex::encode_upper(p))?;
            }
            Ok(())
        }
        MessageCmd::Decode { pdus } => decode(&pdus),
    }
}

/// `--to`: a phone number (address digits `0-9 * # a-c`, optional `+`). An
/// alphanumeric address names a sender, never a recipient.
fn recipient_number(to: &str) -> Result<Address> {
    let a = Address::parse(to).with_context(|| format!("--to {to:?}"))?;
    if a.ton == TypeOfNumber::Alphanumeric {
        bail!("--to {to:?}: not a phone number (digits with an optional leading +)");
    }
    Ok(a)
}

/// Print one line; a closed pipe (`| head`) ends the output quietly.
fn emit(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.context("writing to standard output"),
    }
}

fn read_input(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Parse attributes JSON, filling fields it does not give with defaults.
fn parse_attributes(json: &str) -> Result<VideoAttributes> {
    let given: serde_json::Value = serde_json::from_str(json).context("not valid JSON")?;
    let serde_json::Value::Object(given) = given else {
        bail!("expected a JSON object of video attributes");
    };
    let mut merged = serde_json::to_value(VideoAttributes::default())?;
    if let serde_json::Value::Object(m) = &mut merged {
        m.extend(given);
    }
    serde_json::from_value(merged).context("not video attributes")
}

/// A concatenation reference derived from the content (FNV-1a), so that
/// two different messages sent back to back do not share one.
fn content_reference(bytes: &[u8]) -> u16 {
    let h = bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    (h ^ (h >> 16)) as u16
}

fn decode(args: &[String]) -> Result<()> {
    let mut hexes: Vec<String> = Vec::new();
    for a in args {
        if a == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            hexes.extend(s.split_whitespace().map(str::to_owned));
        } else {
            hexes.extend(a.split_whitespace().map(str::to_owned));
        }
    }
    if hexes.is_empty() {
        bail!("no PDUs given");
    }
    let mut r = Reassembler::default();
    let mut decoded = 0usize;
    for (i, h) in hexes.iter().enumerate() {
        match r
            .push_hex(h, 0)
            .with_context(|| format!("PDU {} of {}", i + 1, hexes.len()))?
        {
            PushOutcome::Complete(share) => {
                decoded += 1;
                emit(&serde_json::to_string_pretty(&share.attributes)?)?;
            }
            PushOutcome::Pending { .. } => {}
            PushOutcome::Duplicate {
                sequence,
                reference,
                identical,
                ..
            } => {
                eprintln!(
                    "warning: PDU {}: part {sequence} of message {reference} given twice{}; the first copy is used",
                    i + 1,
                    if identical { "" } else { " with different content" }
                );
            }
        }
    }
    // Every PDU has been read: what is still pending will never complete.
    let incomplete = r.expire(u64::MAX);
    if !incomplete.is_empty() {
        let list: Vec<String> = incomplete
            .iter()
            .map(|m| {
                format!(
                    "message {} from {} ({} parts): part(s) {:?} not given",
                    m.reference, m.peer, m.total, m.missing
                )
            })
            .collect();
        bail!("incomplete: {}", list.join("; "));
    }
    if decoded == 0 {
        bail!("no complete share message in the PDUs given");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_json_takes_defaults() {
        let a = parse_attributes(r#"{"id":"x","share_url":"https://s/1"}"#).unwrap();
        assert_eq!(a.id, "x");
        assert_eq!(a.share_url.as_deref(), Some("https://s/1"));
        assert!(parse_attributes("[1]").is_err());
        assert!(parse_attributes(r#"{"width":"wide"}"#).is_err());
    }

    #[test]
    fn recipients_are_numbers() {
        assert_eq!(
            recipient_number("+86 138 0013 8000").unwrap().value,
            "8613800138000"
        );
        let e = recipient_number("Sharecast").unwrap_err().to_string();
        assert!(e.contains("not a phone number"), "{e}");
        assert!(recipient_number("").is_err());
    }

    #[test]
    fn references_differ_by_content() {
        assert_ne!(content_reference(b"a"), content_reference(b"b"));
    }
}
