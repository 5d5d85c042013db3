//! SMS transfer-layer PDUs (3GPP TS 23.040 §9.2): SMS-SUBMIT encoding and
//! decoding, SMS-DELIVER encoding and decoding, addresses, service-centre
//! timestamps, data coding schemes (TS 23.038 §4) and the user data header
//! (§9.2.3.24) with concatenation and application port addressing.
//!
//! PDUs are written in the "PDU mode" layout of TS 27.005 §3.1: an SMSC
//! address field first (the single octet `00` when the default SMSC is
//! used), then the TPDU. [`decode_pdu`] reads that layout, the bare TPDU, or
//! either ([`SmscField::Auto`]).
//!
//! Offsets in [`DecodeError`]s from this module count bytes from the start
//! of the PDU that was passed in.

use std::borrow::Cow;
use std::fmt;

use super::error::{DecodeError, EncodeError, ErrorKind, Layer, Reader};
use super::gsm7;
use super::time::DateTime;
use super::ucs2;

/// Most octets of user data in one SMS (TS 23.040 §9.2.3.16).
pub(crate) const MAX_USER_DATA_OCTETS: usize = 140;
/// Most septets of 7-bit user data in one SMS.
pub(crate) const MAX_USER_DATA_SEPTETS: usize = 160;
/// Most digits in an address field (TS 23.040 §9.1.2.5: 10 octets).
pub(crate) const MAX_ADDRESS_DIGITS: usize = 20;
/// Most characters of an alphanumeric address (10 octets of septets).
pub(crate) const MAX_ALPHANUMERIC_CHARS: usize = 11;

/// Type of number (TS 23.040 §9.1.2.5), bits 6..4 of the type-of-address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeOfNumber {
    /// 000
    Unknown,
    /// 001: the digits include the country code; shown with a leading `+`.
    International,
    /// 010
    National,
    /// 011
    NetworkSpecific,
    /// 100
    Subscriber,
    /// 101: GSM 7-bit packed text, e.g. a sender name.
    Alphanumeric,
    /// 110
    Abbreviated,
    /// 111
    Reserved,
}

impl TypeOfNumber {
    fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Self::Unknown,
            1 => Self::International,
            2 => Self::National,
            3 => Self::NetworkSpecific,
            4 => Self::Subscriber,
            5 => Self::Alphanumeric,
            6 => Self::Abbreviated,
            _ => Self::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::International => 1,
            Self::National => 2,
            Self::NetworkSpecific => 3,
            Self::Subscriber => 4,
            Self::Alphanumeric => 5,
            Self::Abbreviated => 6,
            Self::Reserved => 7,
        }
    }
}

/// Numbering plan: ISDN/telephone (E.164/E.163).
pub(crate) const NPI_ISDN: u8 = 1;

/// An originating, destination or service-centre address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Type of number.
    pub ton: TypeOfNumber,
    /// Numbering plan identification (4 bits).
    pub npi: u8,
    /// The digits (`0-9*#abc`), without `+`; or the text of an
    /// alphanumeric address.
    pub value: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ton == TypeOfNumber::International {
            write!(f, "+{}", self.value)
        } else {
            f.write_str(&self.value)
        }
    }
}

fn digit_to_nibble(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(0xA),
        '#' => Some(0xB),
        'a' | 'A' => Some(0xC),
        'b' | 'B' => Some(0xD),
        'c' | 'C' => Some(0xE),
        _ => None,
    }
}

fn nibble_to_digit(n: u8) -> Option<char> {
    match n {
        0..=9 => Some(char::from(b'0' + n)),
        0xA => Some('*'),
        0xB => Some('#'),
        0xC => Some('a'),
        0xD => Some('b'),
        0xE => Some('c'),
        _ => None,
    }
}

impl Address {
    /// Parse a number as a user writes it: `+8613800138000` is
    /// international, `12345` has an unknown type, and anything else that is
    /// GSM 7-bit text of at most 11 characters is alphanumeric. Spaces,
    /// dashes and parentheses in numbers are ignored.
    pub fn parse(s: &str) -> Result<Self, EncodeError> {
        let s = s.trim();
        let cleaned: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let (intl, digits) = match cleaned.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, cleaned.as_str()),
        };
        if !digits.is_empty() && digits.chars().all(|c| digit_to_nibble(c).is_some()) {
            if digits.len() > MAX_ADDRESS_DIGITS {
                return Err(EncodeError::TooLong {
                    field: "address",
                    len: digits.len(),
                    max: MAX_ADDRESS_DIGITS,
                });
            }
            return Ok(Self {
                ton: if intl {
                    TypeOfNumber::International
                } else {
                    TypeOfNumber::Unknown
                },
                npi: NPI_ISDN,
                value: digits.to_ascii_lowercase(),
            });
        }
        if intl || s.is_empty() {
            return Err(EncodeError::invalid(
                "address",
                format!("{s:?} is not a phone number"),
            ));
        }
        Self::alphanumeric(s)
    }

    /// An alphanumeric address (a sender name).
    pub(crate) fn alphanumeric(s: &str) -> Result<Self, EncodeError> {
        let n = gsm7::septet_len(s).ok_or_else(|| {
            EncodeError::invalid("address", format!("{s:?} is not GSM 7-bit text"))
        })?;
        if n == 0 || n > MAX_ALPHANUMERIC_CHARS {
            return Err(EncodeError::TooLong {
                field: "alphanumeric address",
                len: n,
                max: MAX_ALPHANUMERIC_CHARS,
            });
        }
        Ok(Self {
            ton: TypeOfNumber::Alphanumeric,
            npi: 0,
            value: s.to_string(),
        })
    }

    fn type_of_address(&self) -> u8 {
        0x80 | (self.ton.bits() << 4) | (self.npi & 0x0F)
    }

    fn bcd(&self) -> Result<Vec<u8>, EncodeError> {
        let nibbles: Vec<u8> = self
            .value
            .chars()
            .map(|c| {
                digit_to_nibble(c).ok_or_else(|| {
                    EncodeError::invalid("address", format!("{c:?} is not a dialable digit"))
                })
            })
            .collect::<Result<_, _>>()?;
        if nibbles.len() > MAX_ADDRESS_DIGITS {
            return Err(EncodeError::TooLong {
                field: "address",
                len: nibbles.len(),
                max: MAX_ADDRESS_DIGITS,
            });
        }
        Ok(nibbles
            .chunks(2)
            .map(|p| p[0] | (p.get(1).copied().unwrap_or(0xF) << 4))
            .collect())
    }

    /// Write as TP-OA / TP-DA: length in semi-octets, type, value.
    pub fn encode_tp(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.ton == TypeOfNumber::Alphanumeric {
            let septets = gsm7::encode(&self.value).map_err(|(_, c)| {
                EncodeError::invalid("address", format!("{c:?} is not GSM 7-bit"))
            })?;
            if septets.len() > MAX_ALPHANUMERIC_CHARS {
                return Err(EncodeError::TooLong {
                    field: "alphanumeric address",
                    len: septets.len(),
                    max: MAX_ALPHANUMERIC_CHARS,
                });
            }
            let packed = gsm7::pack(&septets, 0);
            out.push((septets.len() * 7).div_ceil(4) as u8);
            out.push(self.type_of_address());
            out.extend_from_slice(&packed);
        } else {
            let bcd = self.bcd()?;
            out.push(self.value.chars().count() as u8);
            out.push(self.type_of_address());
            out.extend_from_slice(&bcd);
        }
        Ok(())
    }

    /// Write as the RP (SMSC) address of the PDU-mode layout: length in
    /// octets (type included), type, value.
    pub(crate) fn encode_smsc(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.ton == TypeOfNumber::Alphanumeric {
            return Err(EncodeError::invalid(
                "SMSC address",
                "a service centre address must be a number",
            ));
        }
        let bcd = self.bcd()?;
        out.push(bcd.len() as u8 + 1);
        out.push(self.type_of_address());
        out.extend_from_slice(&bcd);
        Ok(())
    }

    fn decode_digits(
        r: &Reader<'_>,
        at: usize,
        bcd: &[u8],
        n: usize,
    ) -> Result<String, DecodeError> {
        let mut s = String::with_capacity(n);
        for i in 0..n {
            let byte = bcd[i / 2];
            let nib = if i % 2 == 0 { byte & 0x0F } else { byte >> 4 };
            match nibble_to_digit(nib) {
                Some(c) => s.push(c),
                None => {
                    return Err(r.error_at(
                        at + i / 2,
                        ErrorKind::Invalid(format!("address digit nibble {nib:#x}")),
                    ))
                }
            }
        }
        Ok(s)
    }

    /// Read TP-OA / TP-DA.
    pub fn decode_tp(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let len = usize::from(r.u8("address length")?);
        if len > MAX_ADDRESS_DIGITS {
            return Err(r.error_at(
                at,
                ErrorKind::BadLength(format!(
                    "address of {len} semi-octets, at most {MAX_ADDRESS_DIGITS}"
                )),
            ));
        }
        let toa = r.u8("type of address")?;
        let ton = TypeOfNumber::from_bits(toa >> 4);
        let octets_at = r.pos();
        let octets = r.take(len.div_ceil(2), "address digits")?;
        let value = if ton == TypeOfNumber::Alphanumeric {
            let count = len * 4 / 7;
            let septets = gsm7::unpack(octets, 0, count).map_err(|e| e.shifted(octets_at))?;
            gsm7::decode(&septets).map_err(|e| e.shifted(octets_at))?
        } else {
            Self::decode_digits(r, octets_at, octets, len)?
        };
        Ok(Self {
            ton,
            npi: toa & 0x0F,
            value,
        })
    }

    /// Read the RP (SMSC) address; `None` when its length is 0.
    pub(crate) fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let at = r.pos();
        let len = usize::from(r.u8("SMSC address length")?);
        if len == 0 {
            return Ok(None);
        }
        if len > 1 + MAX_ADDRESS_DIGITS / 2 {
            return Err(r.error_at(
                at,
                ErrorKind::BadLength(format!("SMSC address of {len} octets, at most 11")),
            ));
        }
        let toa = r.u8("SMSC type of address")?;
        let octets_at = r.pos();
        let octets = r.take(len - 1, "SMSC address digits")?;
        let mut n = octets.len() * 2;
        if octets.last().is_some_and(|b| b >> 4 == 0xF) {
            n -= 1;
        }
        let value = Self::decode_digits(r, octets_at, octets, n)?;
        Ok(Some(Self {
            ton: TypeOfNumber::from_bits(toa >> 4),
            npi: toa & 0x0F,
            value,
        }))
    }
}

/// A service-centre timestamp (TP-SCTS, TS 23.040 §9.2.3.11): local time
/// and its offset from UTC in quarter hours. Two-digit years are read as
/// 1990..=2089.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Year, 1990..=2089.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
    /// Offset of the local time from UTC in quarters of an hour (-79..=79).
    pub tz_quarter_hours: i8,
}

fn swapped_bcd(v: u8) -> u8 {
    ((v % 10) << 4) | (v / 10)
}

impl Timestamp {
    /// The timestamp of Unix time `secs` in a zone `tz_quarter_hours` from
    /// UTC.
    pub fn from_unix(secs: i64, tz_quarter_hours: i8) -> Self {
        let local = DateTime::from_unix(secs + i64::from(tz_quarter_hours) * 900);
        Self {
            year: local.year.clamp(0, 9999) as u16,
            month: local.month as u8,
            day: local.day as u8,
            hour: local.hour as u8,
            minute: local.minute as u8,
            second: local.second as u8,
            tz_quarter_hours,
        }
    }

    /// Unix seconds (UTC) of this timestamp.
    pub fn to_unix(&self) -> i64 {
        let local = DateTime {
            year: i64::from(self.year),
            month: u32::from(self.month),
            day: u32::from(self.day),
            hour: u32::from(self.hour),
            minute: u32::from(self.minute),
            second: u32::from(self.second),
        };
        local.to_unix() - i64::from(self.tz_quarter_hours) * 900
    }

    /// The seven semi-octet encoded octets.
    pub fn encode(&self) -> Result<[u8; 7], EncodeError> {
        if !(1990..=2089).contains(&self.year) {
            return Err(EncodeError::invalid(
                "timestamp",
                format!("year {} outside 1990..=2089", self.year),
            ));
        }
        if self.tz_quarter_hours.unsigned_abs() > 79 {
            return Err(EncodeError::invalid(
                "timestamp",
                format!("time zone {} quarter hours", self.tz_quarter_hours),
            ));
        }
        let tz = self.tz_quarter_hours.unsigned_abs();
        let mut tz_octet = swapped_bcd(tz);
        if self.tz_quarter_hours < 0 {
            tz_octet |= 0x08;
        }
        Ok([
            swapped_bcd((self.year % 100) as u8),
            swapped_bcd(self.month),
            swapped_bcd(self.day),
            swapped_bcd(self.hour),
            swapped_bcd(self.minute),
            swapped_bcd(self.second),
            tz_octet,
        ])
    }

    /// Read seven semi-octet encoded octets.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let b = r.take(7, "service centre timestamp")?;
        let mut v = [0u8; 7];
        for (i, &o) in b.iter().enumerate() {
            let lo = o & 0x0F;
            let hi = o >> 4;
            // In the time-zone octet bit 3 is the sign, so only 3 bits of the
            // tens digit count.
            let tens = if i == 6 { lo & 0x07 } else { lo };
            if tens > 9 || hi > 9 {
                return Err(r.error_at(
                    at + i,
                    ErrorKind::Invalid(format!("timestamp semi-octets {o:#04x}")),
                ));
            }
            v[i] = tens * 10 + hi;
        }
        let yy = u16::from(v[0]);
        let year = if yy >= 90 { 1900 + yy } else { 2000 + yy };
        let negative = b[6] & 0x08 != 0;
        if v[6] > 79 {
            return Err(r.error_at(
                at + 6,
                ErrorKind::Invalid(format!("time zone of {} quarter hours", v[6])),
            ));
        }
        let tz = v[6] as i8;
        let ts = Self {
            year,
            month: v[1],
            day: v[2],
            hour: v[3],
            minute: v[4],
            second: v[5],
            tz_quarter_hours: if negative { -tz } else { tz },
        };
        let check = DateTime {
            year: i64::from(ts.year),
            month: u32::from(ts.month),
            day: u32::from(ts.day),
            hour: u32::from(ts.hour),
            minute: u32::from(ts.minute),
            second: u32::from(ts.second),
        };
        if !check.is_valid() {
            return Err(r.error_at(
                at,
                ErrorKind::Invalid(format!(
                    "timestamp {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second
                )),
            ));
        }
        Ok(ts)
    }
}

/// The character set of the user data, from the data coding scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet, septets.
    Gsm7,
    /// 8-bit data.
    EightBit,
    /// UCS-2 (UTF-16BE).
    Ucs2,
}

impl Alphabet {
    /// The data coding scheme octet Sharecast sends: general data coding, no
    /// message class, uncompressed (`00`, `04`, `08`).
    pub fn dcs(self) -> u8 {
        match self {
            Self::Gsm7 => 0x00,
            Self::EightBit => 0x04,
            Self::Ucs2 => 0x08,
        }
    }

    /// The alphabet a data coding scheme octet selects (TS 23.038 §4).
    /// Compressed user data is not supported.
    pub(crate) fn from_dcs(dcs: u8) -> Result<Self, String> {
        let from_bits = |b: u8| match (b >> 2) & 3 {
            1 => Self::EightBit,
            2 => Self::Ucs2,
            // 00 is the default alphabet; 11 is reserved and read as default.
            _ => Self::Gsm7,
        };
        match dcs >> 4 {
            // General data coding (00xx) and automatic deletion (01xx).
            0x0..=0x7 => {
                if dcs & 0x20 != 0 {
                    Err(format!("compressed user data (DCS {dcs:#04x})"))
                } else {
                    Ok(from_bits(dcs))
                }
            }
            // Reserved groups: default alphabet.
            0x8..=0xB => Ok(Self::Gsm7),
            // Message waiting indication: discard / store, default alphabet.
            0xC | 0xD => Ok(Self::Gsm7),
            // Message waiting indication: store, UCS-2.
            0xE => Ok(Self::Ucs2),
            // Data coding / message class.
            _ => Ok(if dcs & 0x04 != 0 {
                Self::EightBit
            } else {
                Self::Gsm7
            }),
        }
    }
}

/// One information element of a user data header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InformationElement {
    /// Concatenated short message (IEI 0x00 with an 8-bit reference, IEI
    /// 0x08 with a 16-bit reference; TS 23.040 §9.2.3.24.1 and .8).
    Concat {
        /// Reference shared by every part.
        reference: u16,
        /// Number of parts, 1..=255.
        total: u8,
        /// This part's number, 1..=total.
        sequence: u8,
        /// Whether the reference is 16 bits (IEI 0x08).
        wide: bool,
    },
    /// Application port addressing (IEI 0x04 8-bit, IEI 0x05 16-bit;
    /// §9.2.3.24.3 and .4).
    Ports {
        /// Destination port.
        destination: u16,
        /// Originator port.
        source: u16,
        /// Whether the ports are 16 bits (IEI 0x05).
        wide: bool,
    },
    /// Any other element, kept as is.
    Other {
        /// Information element identifier.
        iei: u8,
        /// Its data.
        data: Vec<u8>,
    },
}

impl InformationElement {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match *self {
            Self::Concat {
                reference,
                total,
                sequence,
                wide,
            } => {
                if total == 0 || sequence == 0 || sequence > total {
                    return Err(EncodeError::invalid(
                        "concatenation element",
                        format!("part {sequence} of {total}"),
                    ));
                }
                if wide {
                    let r = reference.to_be_bytes();
                    out.extend_from_slice(&[0x08, 4, r[0], r[1], total, sequence]);
                } else {
                    let r = u8::try_from(reference).map_err(|_| {
                        EncodeError::invalid(
                            "concatenation element",
                            format!("reference {reference} does not fit 8 bits"),
                        )
                    })?;
                    out.extend_from_slice(&[0x00, 3, r, total, sequence]);
                }
            }
            Self::Ports {
                destination,
                source,
                wide,
            } => {
                if wide {
                    out.push(0x05);
                    out.push(4);
                    out.extend_from_slice(&destination.to_be_bytes());
                    out.extend_from_slice(&source.to_be_bytes());
                } else {
                    let d = u8::try_from(destination);
                    let s = u8::try_from(source);
                    match (d, s) {
                        (Ok(d), Ok(s)) => out.extend_from_slice(&[0x04, 2, d, s]),
                        _ => {
                            return Err(EncodeError::invalid(
                                "port element",
                                "8-bit ports must be below 256",
                            ))
                        }
                    }
                }
            }
            Self::Other { iei, ref data } => {
                let len = u8::try_from(data.len()).map_err(|_| EncodeError::TooLong {
                    field: "information element",
                    len: data.len(),
                    max: 255,
                })?;
                out.push(iei);
                out.push(len);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

/// The UDHL octet. The header sits in the 140 octets of user data with its
/// UDHL octet: a longer one is no SMS's, and would not encode again.
fn read_udhl(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let udhl = usize::from(r.u8("user data header length")?);
    if udhl > MAX_USER_DATA_OCTETS - 1 {
        return Err(DecodeError::new(
            Layer::Udh,
            0,
            ErrorKind::BadLength(format!(
                "user data header length {udhl} exceeds the {} octets user data can hold",
                MAX_USER_DATA_OCTETS - 1
            )),
        ));
    }
    Ok(udhl)
}

/// A user data header (TS 23.040 §9.2.3.24).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserDataHeader {
    /// The information elements, in order.
    pub elements: Vec<InformationElement>,
}

/// The concatenation information of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Reference shared by every part.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, 1-based.
    pub sequence: u8,
    /// Whether the reference is 16 bits.
    pub wide: bool,
}

impl UserDataHeader {
    /// Encode, including the leading UDHL octet.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0u8];
        for ie in &self.elements {
            ie.encode(&mut out)?;
        }
        let udhl = out.len() - 1;
        if udhl > MAX_USER_DATA_OCTETS - 1 {
            return Err(EncodeError::TooLong {
                field: "user data header",
                len: udhl,
                max: MAX_USER_DATA_OCTETS - 1,
            });
        }
        out[0] = udhl as u8;
        Ok(out)
    }

    /// Decode a header that starts with its UDHL octet. Returns the header
    /// and its length including the UDHL octet. Offsets count from the UDHL
    /// octet.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(bytes, Layer::Udh);
        let udhl = read_udhl(&mut r)?;
        let body = r.take(udhl, "user data header")?;
        let mut ie_r = Reader::new(body, Layer::Udh);
        let mut elements = Vec::new();
        while !ie_r.is_empty() {
            let at = ie_r.pos() + 1;
            let iei = ie_r
                .u8("information element identifier")
                .map_err(|e| e.shifted(1))?;
            let len = usize::from(
                ie_r.u8("information element length")
                    .map_err(|e| e.shifted(1))?,
            );
            let data = ie_r
                .take(len, "information element data")
                .map_err(|e| e.shifted(1))?;
            let want = match iei {
                0x00 => Some(3),
                0x08 | 0x05 => Some(4),
                0x04 => Some(2),
                _ => None,
            };
            if let Some(want) = want {
                if len != want {
                    return Err(DecodeError::new(
                        Layer::Udh,
                        at,
                        ErrorKind::BadLength(format!(
                            "information element {iei:#04x} has length {len}, expected {want}"
                        )),
                    ));
                }
            }
            let ie = match iei {
                0x00 | 0x08 => {
                    let (reference, total, sequence) = if iei == 0x00 {
                        (u16::from(data[0]), data[1], data[2])
                    } else {
                        (u16::from_be_bytes([data[0], data[1]]), data[2], data[3])
                    };
                    if total == 0 || sequence == 0 || sequence > total {
                        return Err(DecodeError::invalid(
                            Layer::Udh,
                            at,
                            format!("concatenation part {sequence} of {total}"),
                        ));
                    }
                    InformationElement::Concat {
                        reference,
                        total,
                        sequence,
                        wide: iei == 0x08,
                    }
                }
                0x04 => InformationElement::Ports {
                    destination: u16::from(data[0]),
                    source: u16::from(data[1]),
                    wide: false,
                },
                0x05 => InformationElement::Ports {
                    destination: u16::from_be_bytes([data[0], data[1]]),
                    source: u16::from_be_bytes([data[2], data[3]]),
                    wide: true,
                },
                _ => InformationElement::Other {
                    iei,
                    data: data.to_vec(),
                },
            };
            elements.push(ie);
        }
        Ok((Self { elements }, udhl + 1))
    }

    /// The concatenation element, if any.
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.elements.iter().find_map(|e| match *e {
            InformationElement::Concat {
                reference,
                total,
                sequence,
                wide,
            } => Some(ConcatInfo {
                reference,
                total,
                sequence,
                wide,
            }),
            _ => None,
        })
    }

    /// The (destination, source) application ports, if any.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.elements.iter().find_map(|e| match *e {
            InformationElement::Ports {
                destination,
                source,
                ..
            } => Some((destination, source)),
            _ => None,
        })
    }
}

/// The user data proper, after the header, in its coded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Septet values (0..=127), unpacked.
    Gsm7(Vec<u8>),
    /// 8-bit data.
    EightBit(Vec<u8>),
    /// UTF-16BE octets.
    Ucs2(Vec<u8>),
}

impl Body {
    /// The alphabet of this body.
    pub fn alphabet(&self) -> Alphabet {
        match self {
            Self::Gsm7(_) => Alphabet::Gsm7,
            Self::EightBit(_) => Alphabet::EightBit,
            Self::Ucs2(_) => Alphabet::Ucs2,
        }
    }

    /// The raw units (septets or octets).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Gsm7(b) | Self::EightBit(b) | Self::Ucs2(b) => b,
        }
    }

    /// Decode a text body; 8-bit data is an error.
    pub fn text(&self) -> Result<String, DecodeError> {
        match self {
            Self::Gsm7(s) => gsm7::decode(s),
            Self::Ucs2(b) => ucs2::decode(b),
            Self::EightBit(_) => Err(DecodeError::unsupported(
                Layer::Sms,
                0,
                "text from 8-bit data",
            )),
        }
    }

    /// Text as GSM 7-bit when every character allows it, else UCS-2.
    pub fn from_text(text: &str) -> Self {
        match gsm7::encode(text) {
            Ok(s) => Self::Gsm7(s),
            Err(_) => Self::Ucs2(ucs2::encode(text)),
        }
    }
}

/// TP-UD with its optional header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The user data header (TP-UDHI set when present).
    pub header: Option<UserDataHeader>,
    /// The body.
    pub body: Body,
}

impl UserData {
    /// Encode to (TP-UDL, TP-UD octets).
    pub fn encode(&self) -> Result<(u8, Vec<u8>), EncodeError> {
        let header = match &self.header {
            Some(h) => h.encode()?,
            None => Vec::new(),
        };
        let h = header.len();
        // TP-UDL counts septets for a 7-bit body (the header padded to a
        // septet boundary), octets otherwise.
        let (udl, max, field, body) = match &self.body {
            Body::Gsm7(septets) => {
                if let Some(bad) = septets.iter().find(|s| **s > 0x7F) {
                    return Err(EncodeError::invalid(
                        "GSM 7-bit body",
                        format!("septet value {bad:#04x}"),
                    ));
                }
                let header_septets = (h * 8).div_ceil(7);
                let fill = (header_septets * 7 - h * 8) as u8;
                (
                    header_septets + septets.len(),
                    MAX_USER_DATA_SEPTETS,
                    "7-bit user data (septets)",
                    Cow::Owned(gsm7::pack(septets, fill)),
                )
            }
            Body::EightBit(b) | Body::Ucs2(b) => (
                h + b.len(),
                MAX_USER_DATA_OCTETS,
                "user data (octets)",
                Cow::Borrowed(b.as_slice()),
            ),
        };
        if udl > max {
            return Err(EncodeError::TooLong {
                field,
                len: udl,
                max,
            });
        }
        let mut out = header;
        out.extend_from_slice(&body);
        Ok((udl as u8, out))
    }

    /// Read TP-UDL and TP-UD, which must end the PDU exactly.
    fn decode(r: &mut Reader<'_>, alphabet: Alphabet, udhi: bool) -> Result<Self, DecodeError> {
        let udl_at = r.pos();
        let udl = usize::from(r.u8("user data length")?);
        let ud_at = r.pos();
        let octets = match alphabet {
            Alphabet::Gsm7 => {
                if udl > MAX_USER_DATA_SEPTETS {
                    return Err(r.error_at(
                        udl_at,
                        ErrorKind::BadLength(format!(
                            "user data length {udl} septets, at most {MAX_USER_DATA_SEPTETS}"
                        )),
                    ));
                }
                (udl * 7).div_ceil(8)
            }
            _ => {
                if udl > MAX_USER_DATA_OCTETS {
                    return Err(r.error_at(
                        udl_at,
                        ErrorKind::BadLength(format!(
                            "user data length {udl} octets, at most {MAX_USER_DATA_OCTETS}"
                        )),
                    ));
                }
                udl
            }
        };
        let ud = r.take(octets, "user data")?;
        r.finish()?;
        let (header, h) = if udhi {
            if ud.is_empty() {
                return Err(r.error_at(
                    udl_at,
                    ErrorKind::BadLength(
                        "user data header indicated but user data is empty".into(),
                    ),
                ));
            }
            let (hdr, h) = UserDataHeader::decode(ud).map_err(|e| e.shifted(ud_at))?;
            (Some(hdr), h)
        } else {
            (None, 0)
        };
        let body = match alphabet {
            Alphabet::Gsm7 => {
                let header_septets = (h * 8).div_ceil(7);
                if header_septets > udl {
                    return Err(r.error_at(
                        udl_at,
                        ErrorKind::BadLength(format!(
                            "user data length {udl} septets is shorter than its {h}-octet header"
                        )),
                    ));
                }
                let fill = (header_septets * 7 - h * 8) as u8;
                let septets = gsm7::unpack(&ud[h..], fill, udl - header_septets)
                    .map_err(|e| e.shifted(ud_at + h))?;
                Body::Gsm7(septets)
            }
            Alphabet::EightBit => Body::EightBit(ud[h..].to_vec()),
            Alphabet::Ucs2 => Body::Ucs2(ud[h..].to_vec()),
        };
        Ok(Self { header, body })
    }

    /// The concatenation element, if any.
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.header.as_ref().and_then(UserDataHeader::concat)
    }

    /// The (destination, source) ports, if any.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.header.as_ref().and_then(UserDataHeader::ports)
    }
}

/// TP-Validity-Period of an SMS-SUBMIT (TS 23.040 §9.2.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validity {
    /// Not present (the SMSC default applies).
    #[default]
    None,
    /// Relative format, one octet.
    Relative(u8),
    /// Enhanced format, seven octets kept as is.
    Enhanced([u8; 7]),
    /// Absolute time.
    Absolute(Timestamp),
}

impl Validity {
    fn vpf(&self) -> u8 {
        match self {
            Self::None => 0b00,
            Self::Enhanced(_) => 0b01,
            Self::Relative(_) => 0b10,
            Self::Absolute(_) => 0b11,
        }
    }
}

/// An SMS-SUBMIT (mobile to service centre).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSubmit {
    /// The service centre, `None` for the phone's default.
    pub smsc: Option<Address>,
    /// TP-RD: reject duplicates.
    pub reject_duplicates: bool,
    /// TP-VP.
    pub validity: Validity,
    /// TP-SRR: status report requested.
    pub status_report_request: bool,
    /// TP-RP: reply path.
    pub reply_path: bool,
    /// TP-MR: message reference.
    pub message_ref: u8,
    /// TP-DA: the recipient.
    pub destination: Address,
    /// TP-PID.
    pub protocol_id: u8,
    /// TP-DCS.
    pub dcs: u8,
    /// TP-UD.
    pub user_data: UserData,
}

impl SmsSubmit {
    /// A submit with default flags: no SMSC, no validity, DCS from the body.
    pub fn new(destination: Address, user_data: UserData) -> Self {
        Self {
            smsc: None,
            reject_duplicates: false,
            validity: Validity::None,
            status_report_request: false,
            reply_path: false,
            message_ref: 0,
            destination,
            protocol_id: 0,
            dcs: user_data.body.alphabet().dcs(),
            user_data,
        }
    }

    /// Encode in PDU-mode layout (SMSC address field first).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = start_pdu(&self.smsc, self.dcs, &self.user_data)?;
        let mut first = 0x01 | self.validity.vpf() << 3;
        if self.reject_duplicates {
            first |= 0x04;
        }
        out.push(
            first | common_flags(self.status_report_request, &self.user_data, self.reply_path),
        );
        out.push(self.message_ref);
        self.destination.encode_tp(&mut out)?;
        out.push(self.protocol_id);
        out.push(self.dcs);
        match &self.validity {
            Validity::None => {}
            Validity::Relative(v) => out.push(*v),
            Validity::Enhanced(b) => out.extend_from_slice(b),
            Validity::Absolute(t) => out.extend_from_slice(&t.encode()?),
        }
        end_pdu(out, &self.user_data)
    }
}

/// The start of an SMS-SUBMIT or SMS-DELIVER in PDU mode: the DCS checked
/// against the body, then the SMSC address field (0: the phone's default).
fn start_pdu(
    smsc: &Option<Address>,
    dcs: u8,
    user_data: &UserData,
) -> Result<Vec<u8>, EncodeError> {
    check_dcs(dcs, &user_data.body)?;
    let mut out = Vec::with_capacity(MAX_USER_DATA_OCTETS + 30);
    match smsc {
        Some(a) => a.encode_smsc(&mut out)?,
        None => out.push(0),
    }
    Ok(out)
}

/// The bits of the first octet that SMS-SUBMIT and SMS-DELIVER share:
/// TP-SRR / TP-SRI (0x20), TP-UDHI (0x40, a user data header follows) and
/// TP-RP (0x80).
fn common_flags(status_report: bool, user_data: &UserData, reply_path: bool) -> u8 {
    let mut bits = 0;
    if status_report {
        bits |= 0x20;
    }
    if user_data.header.is_some() {
        bits |= 0x40;
    }
    if reply_path {
        bits |= 0x80;
    }
    bits
}

/// The end of an SMS-SUBMIT or SMS-DELIVER: TP-UDL and TP-UD.
fn end_pdu(mut out: Vec<u8>, user_data: &UserData) -> Result<Vec<u8>, EncodeError> {
    let (udl, ud) = user_data.encode()?;
    out.push(udl);
    out.extend_from_slice(&ud);
    Ok(out)
}

fn check_dcs(dcs: u8, body: &Body) -> Result<(), EncodeError> {
    match Alphabet::from_dcs(dcs) {
        Ok(a) if a == body.alphabet() => Ok(()),
        Ok(a) => Err(EncodeError::invalid(
            "data coding scheme",
            format!(
                "DCS {dcs:#04x} selects {a:?} but the body is {:?}",
                body.alphabet()
            ),
        )),
        Err(e) => Err(EncodeError::invalid("data coding scheme", e)),
    }
}

/// An SMS-DELIVER (service centre to mobile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsDeliver {
    /// The service centre that delivered it, if given.
    pub smsc: Option<Address>,
    /// TP-MMS inverted: more messages are waiting in the service centre.
    pub more_messages_to_send: bool,
    /// TP-LP: loop prevention.
    pub loop_prevention: bool,
    /// TP-SRI: a status report will be returned to the sender.
    pub status_report_indication: bool,
    /// TP-RP: reply path.
    pub reply_path: bool,
    /// TP-OA: the sender.
    pub originator: Address,
    /// TP-PID.
    pub protocol_id: u8,
    /// TP-DCS.
    pub dcs: u8,
    /// TP-SCTS.
    pub timestamp: Timestamp,
    /// TP-UD.
    pub user_data: UserData,
}

impl SmsDeliver {
    /// A deliver with default flags and the DCS taken from the body.
    pub fn new(originator: Address, timestamp: Timestamp, user_data: UserData) -> Self {
        Self {
            smsc: None,
            more_messages_to_send: false,
            loop_prevention: false,
            status_report_indication: false,
            reply_path: false,
            originator,
            protocol_id: 0,
            dcs: user_data.body.alphabet().dcs(),
            timestamp,
            user_data,
        }
    }

    /// Encode in PDU-mode layout (SMSC address field first).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = start_pdu(&self.smsc, self.dcs, &self.user_data)?;
        let mut first = 0x00;
        if !self.more_messages_to_send {
            first |= 0x04;
        }
        if self.loop_prevention {
            first |= 0x08;
        }
        let flags = common_flags(
            self.status_report_indication,
            &self.user_data,
            self.reply_path,
        );
        out.push(first | flags);
        self.originator.encode_tp(&mut out)?;
        out.push(self.protocol_id);
        out.push(self.dcs);
        out.extend_from_slice(&self.timestamp.encode()?);
        end_pdu(out, &self.user_data)
    }
}

/// A decoded SMS PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsPdu {
    /// Mobile-terminated.
    Deliver(SmsDeliver),
    /// Mobile-originated.
    Submit(SmsSubmit),
}

impl SmsPdu {
    /// The user data.
    pub fn user_data(&self) -> &UserData {
        match self {
            Self::Deliver(d) => &d.user_data,
            Self::Submit(s) => &s.user_data,
        }
    }

    /// The other party: the originator of a deliver, the destination of a
    /// submit.
    pub fn peer(&self) -> &Address {
        match self {
            Self::Deliver(d) => &d.originator,
            Self::Submit(s) => &s.destination,
        }
    }

    /// The service-centre timestamp of a deliver.
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self {
            Self::Deliver(d) => Some(d.timestamp),
            Self::Submit(_) => None,
        }
    }
}

/// Whether a PDU starts with the SMSC address field of the PDU-mode layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmscField {
    /// It does (TS 27.005 PDU mode, what [`SmsSubmit::encode`] writes).
    Present,
    /// It does not (a bare TPDU).
    Absent,
    /// Try `Present`, then `Absent`; report the `Present` error if both fail.
    Auto,
}

/// Decode an SMS-DELIVER or SMS-SUBMIT. The PDU must end exactly where its
/// user data ends.
pub fn decode_pdu(bytes: &[u8], smsc: SmscField) -> Result<SmsPdu, DecodeError> {
    match smsc {
        SmscField::Present => decode_tpdu(bytes, true),
        SmscField::Absent => decode_tpdu(bytes, false),
        SmscField::Auto => match decode_tpdu(bytes, true) {
            Ok(p) => Ok(p),
            Err(e) => decode_tpdu(bytes, false).map_err(|_| e),
        },
    }
}

/// TP-PID and TP-DCS, with the alphabet the DCS selects.
fn read_pid_dcs(r: &mut Reader<'_>) -> Result<(u8, u8, Alphabet), DecodeError> {
    let protocol_id = r.u8("protocol identifier")?;
    let dcs_at = r.pos();
    let dcs = r.u8("data coding scheme")?;
    let alphabet =
        Alphabet::from_dcs(dcs).map_err(|e| r.error_at(dcs_at, ErrorKind::Unsupported(e)))?;
    Ok((protocol_id, dcs, alphabet))
}

fn decode_tpdu(bytes: &[u8], with_smsc: bool) -> Result<SmsPdu, DecodeError> {
    let mut r = Reader::new(bytes, Layer::Sms);
    let smsc = if with_smsc {
        Address::decode_smsc(&mut r)?
    } else {
        None
    };
    let first_at = r.pos();
    let first = r.u8("first octet")?;
    let udhi = first & 0x40 != 0;
    match first & 0x03 {
        0b00 => {
            let originator = Address::decode_tp(&mut r)?;
            let (protocol_id, dcs, alphabet) = read_pid_dcs(&mut r)?;
            let timestamp = Timestamp::decode(&mut r)?;
            let user_data = UserData::decode(&mut r, alphabet, udhi)?;
            Ok(SmsPdu::Deliver(SmsDeliver {
                smsc,
                more_messages_to_send: first & 0x04 == 0,
                loop_prevention: first & 0x08 != 0,
                status_report_indication: first & 0x20 != 0,
                reply_path: first & 0x80 != 0,
                originator,
                protocol_id,
                dcs,
                timestamp,
                user_data,
            }))
        }
        0b01 => {
            let message_ref = r.u8("message reference")?;
            let destination = Address::decode_tp(&mut r)?;
            let (protocol_id, dcs, alphabet) = read_pid_dcs(&mut r)?;
            let validity = match (first >> 3) & 0x03 {
                0b00 => Validity::None,
                0b10 => Validity::Relative(r.u8("validity period")?),
                0b01 => {
                    let b = r.take(7, "enhanced validity period")?;
                    let mut a = [0u8; 7];
                    a.copy_from_slice(b);
                    Validity::Enhanced(a)
                }
                _ => Validity::Absolute(Timestamp::decode(&mut r)?),
            };
            let user_data = UserData::decode(&mut r, alphabet, udhi)?;
            Ok(SmsPdu::Submit(SmsSubmit {
                smsc,
                reject_duplicates: first & 0x04 != 0,
                validity,
                status_report_request: first & 0x20 != 0,
                reply_path: first & 0x80 != 0,
                message_ref,
                destination,
                protocol_id,
                dcs,
                user_data,
            }))
        }
        0b10 => Err(r.error_at(
            first_at,
            ErrorKind::Unsupported("message type SMS-STATUS-REPORT / SMS-COMMAND".into()),
        )),
        _ => Err(r.error_at(
            first_at,
            ErrorKind::Invalid("message type indicator 0b11 (reserved)".into()),
        )),
    }
}

/// Parse hexadecimal text (whitespace ignored) into bytes; errors give the
/// offset of the offending character.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut hi: Option<(usize, u8)> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            continue;
        }
        let v = c
            .to_digit(16)
            .ok_or_else(|| DecodeError::invalid(Layer::Hex, i, format!("hex digit {c:?}")))?
            as u8;
        match hi.take() {
            None => hi = Some((i, v)),
            Some((_, h)) => out.push((h << 4) | v),
        }
    }
    if let Some((i, _)) = hi {
        return Err(DecodeError::new(
            Layer::Hex,
            i,
            ErrorKind::BadLength("odd number of hex digits".into()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_parse_kinds() {
        let a = Address::parse("+86 138-0013-8000").unwrap();
        assert_eq!(a.ton, TypeOfNumber::International);
        assert_eq!(a.value, "8613800138000");
        assert_eq!(a.to_string(), "+8613800138000");
        let a = Address::parse("12345").unwrap();
        assert_eq!(a.ton, TypeOfNumber::Unknown);
        let a = Address::parse("Sharecast").unwrap();
        assert_eq!(a.ton, TypeOfNumber::Alphanumeric);
        assert!(Address::parse("+12ab!").is_err());
        assert!(Address::parse("ThisNameIsTooLong").is_err());
        assert!(Address::parse("").is_err());
    }

    #[test]
    fn alphanumeric_address_round_trip() {
        let a = Address::alphanumeric("Sharecast").unwrap();
        let mut out = Vec::new();
        a.encode_tp(&mut out).unwrap();
        assert_eq!(out[0], 16); // 9 septets = 63 bits = 16 semi-octets
        assert_eq!(out[1], 0xD0);
        let mut r = Reader::new(&out, Layer::Sms);
        assert_eq!(Address::decode_tp(&mut r).unwrap(), a);
    }

    #[test]
    fn timestamp_round_trip_and_negative_zone() {
        let t = Timestamp {
            year: 2024,
            month: 2,
            day: 29,
            hour: 23,
            minute: 59,
            second: 58,
            tz_quarter_hours: -20,
        };
        let b = t.encode().unwrap();
        assert_eq!(b, [0x42, 0x20, 0x92, 0x32, 0x95, 0x85, 0x0A]);
        let mut r = Reader::new(&b, Layer::Sms);
        assert_eq!(Timestamp::decode(&mut r).unwrap(), t);
        assert_eq!(Timestamp::from_unix(t.to_unix(), -20), t);
        let mut bad = b;
        bad[2] = 0x23; // day 32
        let mut r = Reader::new(&bad, Layer::Sms);
        assert!(Timestamp::decode(&mut r).is_err());
    }

    #[test]
    fn dcs_groups() {
        assert_eq!(Alphabet::from_dcs(0x00), Ok(Alphabet::Gsm7));
        assert_eq!(Alphabet::from_dcs(0x04), Ok(Alphabet::EightBit));
        assert_eq!(Alphabet::from_dcs(0x08), Ok(Alphabet::Ucs2));
        assert_eq!(Alphabet::from_dcs(0xF5), Ok(Alphabet::EightBit));
        assert_eq!(Alphabet::from_dcs(0xF0), Ok(Alphabet::Gsm7));
        assert_eq!(Alphabet::from_dcs(0xE0), Ok(Alphabet::Ucs2));
        assert!(Alphabet::from_dcs(0x20).is_err());
    }

    #[test]
    fn udh_rejects_bad_lengths() {
        // Concat IE with length 2.
        assert!(UserDataHeader::decode(&[0x04, 0x00, 0x02, 0x01, 0x01]).is_err());
        // IE runs past UDHL.
        assert!(UserDataHeader::decode(&[0x03, 0x00, 0x03, 0x01]).is_err());
        // Sequence 0.
        assert!(UserDataHeader::decode(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x00]).is_err());
        let (h, n) = UserDataHeader::decode(&[
            0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x7A, 0x02, 0x01,
        ])
        .unwrap();
        assert_eq!(n, 12);
        assert_eq!(h.ports(), Some((2948, 9200)));
        assert_eq!(
            h.concat(),
            Some(ConcatInfo {
                reference: 0x7A,
                total: 2,
                sequence: 1,
                wide: false
            })
        );
    }

    /// Found by fuzzing (fuzz/, target share_udh): a UDHL of 181 was read
    /// although user data holds 140 octets, and the header then did not
    /// encode again.
    #[test]
    fn udh_longer_than_user_data_is_refused() {
        let mut bytes = vec![0xB5];
        for _ in 0..59 {
            bytes.extend_from_slice(&[0x30, 0x01, 0x01]);
        }
        bytes.extend_from_slice(&[0x31, 0x02, 0x01, 0x01]);
        let e = UserDataHeader::decode(&bytes).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.to_string().contains("exceeds the 139 octets"), "{e}");
        // The longest a header can be still decodes and encodes again.
        let mut longest = vec![139];
        for _ in 0..45 {
            longest.extend_from_slice(&[0x30, 0x01, 0x01]);
        }
        longest.extend_from_slice(&[0x31, 0x02, 0x01, 0x01]);
        let (h, n) = UserDataHeader::decode(&longest).unwrap();
        assert_eq!(n, 140);
        assert_eq!(h.encode().unwrap(), longest);
    }

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex("0a B0\n").unwrap(), vec![0x0A, 0xB0]);
        let e = parse_hex("0g").unwrap_err();
        assert_eq!(e.offset, 1);
        assert!(parse_hex("abc").is_err());
    }
}
