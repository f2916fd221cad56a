//! The primitives of the binary row format: postcard's encoding, written and read by hand.
//!
//! Unsigned integers are LEB128 varints, signed ones zigzag varints, strings and sequences a
//! varint length then their items, exactly as [postcard](https://docs.rs/postcard) lays them
//! out. The layouts of the records themselves are in `store::state_format`; they are written
//! by hand rather than derived because the core types' serde attributes are made for JSON
//! (defaults left out, internally tagged enums, decimals as numbers or strings), which a
//! format without field names cannot read back.
//!
//! Reading never panics and never allocates more than the input could hold: a length is
//! checked against the bytes left before anything is reserved. An error names the field.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Why a binary row does not decode, and at which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct WireError {
    pub field: &'static str,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the row ends before it")]
    Truncated,
    #[error("varint longer than its type")]
    Overlong,
    #[error("value {0} out of range")]
    OutOfRange(u128),
    #[error("not UTF-8")]
    NotUtf8,
    #[error("unknown tag {0}")]
    Tag(u8),
    #[error("{0} bytes left over after the record")]
    Trailing(usize),
}

/// Appends values to a row.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn u128(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn u64(&mut self, v: u64) {
        self.u128(u128::from(v));
    }

    pub fn u32(&mut self, v: u32) {
        self.u128(u128::from(v));
    }

    pub fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn i32(&mut self, v: i32) {
        self.i64(i64::from(v));
    }

    /// A collection's length (`usize` is at most 64 bits on every supported target).
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    /// A decimal as the magnitude of its mantissa (varint), then one byte holding its scale
    /// (at most 28) and, in the top bit, its sign: exact, negative zero and trailing zeros
    /// included (`1000.00` stays `1000.00`), and 3 bytes for `1000`.
    pub fn decimal(&mut self, d: Decimal) {
        self.u128(d.mantissa().unsigned_abs());
        self.u8(d.scale() as u8 | (u8::from(d.is_sign_negative()) << 7));
    }

    /// An instant as seconds since the epoch and nanoseconds: exact at chrono's precision.
    pub fn time(&mut self, t: DateTime<Utc>) {
        self.i64(t.timestamp());
        self.u32(t.timestamp_subsec_nanos());
    }

    pub fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.time(t);
            }
        }
    }
}

/// Reads values from a row, in the order they were written.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// The whole row was read: anything left over means it is not the record it claims.
    pub fn finish(self, field: &'static str) -> Result<(), WireError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(WireError {
                field,
                problem: Problem::Trailing(n),
            }),
        }
    }

    /// The bytes not read yet (a row's tail in another form, or where a value ended).
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.bytes.len() {
            return Err(err(field, Problem::Truncated));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(field, 1)?[0])
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(err(field, Problem::Tag(other))),
        }
    }

    /// A varint of at most `bits` bits.
    fn varint(&mut self, field: &'static str, bits: u32) -> Result<u128, WireError> {
        let mut value: u128 = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8(field)?;
            if shift >= bits {
                return Err(err(field, Problem::Overlong));
            }
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if bits < 128 && value >> bits != 0 {
                    return Err(err(field, Problem::OutOfRange(value)));
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(self.varint(field, 64)? as u64)
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(self.varint(field, 32)? as u32)
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let v = self.u32(field)?;
        u16::try_from(v).map_err(|_| err(field, Problem::OutOfRange(u128::from(v))))
    }

    pub fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        let z = self.u64(field)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        let v = self.i64(field)?;
        i32::try_from(v).map_err(|_| err(field, Problem::OutOfRange(v.unsigned_abs().into())))
    }

    /// A collection's length, refused when the row has fewer bytes left than that many items
    /// of at least `min_item` bytes each (so a bad length never reserves memory).
    pub fn len(&mut self, field: &'static str, min_item: usize) -> Result<usize, WireError> {
        let n = self.u64(field)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(min_item.max(1)) <= self.bytes.len());
        fits.ok_or_else(|| err(field, Problem::Truncated))
    }

    pub fn str(&mut self, field: &'static str) -> Result<String, WireError> {
        self.str_ref(field).map(str::to_string)
    }

    /// A string borrowed from the row, for a reader that stores it in a form of its own.
    pub fn str_ref(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let n = self.len(field, 1)?;
        let bytes = self.take(field, n)?;
        std::str::from_utf8(bytes).map_err(|_| err(field, Problem::NotUtf8))
    }

    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, WireError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => self.str(field).map(Some),
            other => Err(err(field, Problem::Tag(other))),
        }
    }

    pub fn decimal(&mut self, field: &'static str) -> Result<Decimal, WireError> {
        // At most 96 bits: a Decimal's mantissa.
        let magnitude = self.varint(field, 96)?;
        let flags = self.u8(field)?;
        let mut d = Decimal::try_from_i128_with_scale(magnitude as i128, u32::from(flags & 0x7f))
            .map_err(|_| err(field, Problem::Tag(flags)))?;
        d.set_sign_negative(flags & 0x80 != 0);
        Ok(d)
    }

    pub fn time(&mut self, field: &'static str) -> Result<DateTime<Utc>, WireError> {
        let secs = self.i64(field)?;
        let nanos = self.u32(field)?;
        DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| err(field, Problem::OutOfRange(secs.unsigned_abs().into())))
    }

    pub fn opt_time(&mut self, field: &'static str) -> Result<Option<DateTime<Utc>>, WireError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => self.time(field).map(Some),
            other => Err(err(field, Problem::Tag(other))),
        }
    }
}

pub fn err(field: &'static str, problem: Problem) -> WireError {
    WireError { field, problem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    #[test]
    fn varints_are_postcards() {
        // postcard's own encoding of the same values.
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::default();
            w.u64(v);
            assert_eq!(w.buf, postcard::to_allocvec(&v).unwrap(), "{v}");
            assert_eq!(Reader::new(&w.buf).u64("v").unwrap(), v);
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut w = Writer::default();
            w.i64(v);
            assert_eq!(w.buf, postcard::to_allocvec(&v).unwrap(), "{v}");
            assert_eq!(Reader::new(&w.buf).i64("v").unwrap(), v);
        }
        let mut w = Writer::default();
        w.str("héllo");
        assert_eq!(w.buf, postcard::to_allocvec("héllo").unwrap());
    }

    #[test]
    fn decimals_keep_their_scale() {
        for text in [
            "0",
            "1000",
            "1000.00",
            "-0.5",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "-0",
            "-0.00",
        ] {
            let d = Decimal::from_str(text).unwrap();
            let mut w = Writer::default();
            w.decimal(d);
            let back = Reader::new(&w.buf).decimal("d").unwrap();
            assert_eq!(back.to_string(), d.to_string(), "{text}");
            assert_eq!(back.serialize(), d.serialize(), "{text}: the same bits");
        }
        let mut w = Writer::default();
        w.decimal(Decimal::from(1000));
        assert_eq!(w.buf.len(), 3);
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = Reader::new(&[0x80]).u64("wins").unwrap_err();
        assert_eq!(e.to_string(), "field `wins`: the row ends before it");
        let e = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f])
            .u32("challenge")
            .unwrap_err();
        assert_eq!(e.problem, Problem::OutOfRange(u128::from(u32::MAX) * 8 + 7));
        // A length beyond the row's end is refused before anything is reserved.
        let e = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f])
            .str("reward type")
            .unwrap_err();
        assert_eq!(e.problem, Problem::Truncated);
        assert_eq!(
            Reader::new(&[1, 0xff]).str("id").unwrap_err().problem,
            Problem::NotUtf8
        );
        assert_eq!(
            Reader::new(&[2]).bool("met").unwrap_err().problem,
            Problem::Tag(2)
        );
        // Scale 29 is past a Decimal's.
        assert!(Reader::new(&[2, 29]).decimal("amount").is_err());
        assert!(Reader::new(&[1, 2]).finish("record").is_err());
    }

    proptest! {
        #[test]
        fn times_round_trip(secs in -8_000_000_000_000i64..8_000_000_000_000, nanos in 0u32..1_000_000_000) {
            if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                let mut w = Writer::default();
                w.time(t);
                prop_assert_eq!(Reader::new(&w.buf).time("t").unwrap(), t);
            }
        }

        #[test]
        fn decimals_round_trip(m in any::<i64>(), hi in any::<i32>(), scale in 0u32..=28) {
            let mantissa = (i128::from(hi) << 64 | i128::from(m as u64)) >> 32;
            let d = Decimal::from_i128_with_scale(mantissa, scale);
            let mut w = Writer::default();
            w.decimal(d);
            let back = Reader::new(&w.buf).decimal("d").unwrap();
            prop_assert_eq!(back.serialize(), d.serialize());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.str("s").and_then(|_| r.decimal("d")).and_then(|_| r.time("t"));
        }
    }
}
