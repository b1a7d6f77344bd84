//! `datetime` and `zoneinfo`, as chrono's types and the lossless
//! [`PyDateTime`] and [`PyTime`].
//!
//! CPython pickles a `date`, `time` or `datetime` as its packed bytes (the
//! C module's state), plus the tzinfo if there is one. Before protocol 3
//! those bytes go through `_codecs.encode(str, 'latin1')`, which the
//! reader turns back into bytes. `fold=1` is packed into the month (a
//! `datetime`) or the hour (a `time`) with bit 7, and only from protocol 4:
//! CPython itself drops it at protocols 0 to 3, and so do we.
//!
//! The chrono types take what gives a value Python finds equal (`==`):
//! `fold` on a naive value and a `timezone`'s name are dropped, since
//! Python's comparison ignores them. What would change the value (an
//! offset, a `zoneinfo` zone whose offset is not in the pickle) is an
//! error that names the type that can hold it: [`PyDateTime`].

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};

use super::{args_of, call_of, no_extras};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::registry::Registry;
use crate::typed::save::{FnReduce, Reduce, Saver};
use crate::value::Value;

pub(super) fn install(r: &mut Registry) -> Result<()> {
    r.register_constructor("datetime", "date", NaiveDate::construct)?;
    r.register_constructor("datetime", "time", PyTime::construct)?;
    r.register_constructor("datetime", "datetime", PyDateTime::construct)?;
    r.register_constructor("datetime", "timedelta", TimeDelta::construct)?;
    r.register_constructor("datetime", "timezone", TzInfo::construct)?;
    r.register_constructor("zoneinfo", "ZoneInfo._unpickle", TzInfo::construct)?;
    Ok(())
}

fn unpicklable(msg: String) -> Error {
    Error::new(ErrorKind::Unpicklable(msg))
}

/// The packed state: `bytes`, or a `str` of code points below 256 (what a
/// Python 2 pickle, or a latin-1 decoded one, gives).
fn packed(node: &Node<'_>, len: usize, what: &str) -> Result<Vec<u8>> {
    let bytes = match node.value() {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => s
            .code_points()
            .map(|c| u8::try_from(c).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| node.expected("the packed bytes of a datetime"))?,
        _ => return Err(node.expected("the packed bytes of a datetime")),
    };
    if bytes.len() != len {
        return Err(node.error_msg(format!(
            "expected {len} bytes of packed {what}, found {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn micros(t: &NaiveTime) -> Result<u32> {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return Err(unpicklable(format!(
            "{t} is a leap second, which Python's datetime cannot hold"
        )));
    }
    if !nanos.is_multiple_of(1000) {
        return Err(unpicklable(format!(
            "{t} has nanoseconds; Python's datetime holds microseconds"
        )));
    }
    Ok(nanos / 1000)
}

fn pack_time(t: &NaiveTime, fold: bool) -> Result<[u8; 6]> {
    let us = micros(t)?;
    // Hour bit 7 is fold (protocol 4 and up only; the caller decides).
    Ok([
        t.hour() as u8 | if fold { 0x80 } else { 0 },
        t.minute() as u8,
        t.second() as u8,
        (us >> 16) as u8,
        (us >> 8) as u8,
        us as u8,
    ])
}

fn unpack_time(node: &Node<'_>, b: &[u8]) -> Result<(NaiveTime, bool)> {
    let us = (u32::from(b[3]) << 16) | (u32::from(b[4]) << 8) | u32::from(b[5]);
    NaiveTime::from_hms_micro_opt(u32::from(b[0] & 0x7f), u32::from(b[1]), u32::from(b[2]), us)
        .map(|t| (t, b[0] & 0x80 != 0))
        .ok_or_else(|| node.error_msg(format!("the packed time {b:?} is out of range")))
}

fn pack_date(d: &NaiveDate) -> Result<[u8; 4]> {
    let year = d.year();
    if !(1..=9999).contains(&year) {
        return Err(unpicklable(format!(
            "{d} is outside Python's years 1 to 9999"
        )));
    }
    Ok([
        (year >> 8) as u8,
        year as u8,
        d.month() as u8,
        d.day() as u8,
    ])
}

fn unpack_date(node: &Node<'_>, b: &[u8]) -> Result<NaiveDate> {
    let year = (i32::from(b[0]) << 8) | i32::from(b[1]);
    NaiveDate::from_ymd_opt(year, u32::from(b[2] & 0x7f), u32::from(b[3]))
        .filter(|_| year >= 1)
        .ok_or_else(|| node.error_msg(format!("the packed date {b:?} is out of range")))
}

fn bytes_arg<'a>(bytes: &'a [u8]) -> impl Reduce + 'a {
    FnReduce(move |s: &mut Saver<'_, '_>| s.bytes(bytes))
}

// ---- date -------------------------------------------------------------------

/// `datetime.date(packed)`, as CPython writes it.
impl Reduce for NaiveDate {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let b = pack_date(self)?;
        let args = (bytes_arg(&b),);
        s.reduction("datetime", "date").args(&args).save()
    }
}

impl Construct for NaiveDate {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("datetime", "date")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 1)?;
        args.with_field("0", &items[0], |n| unpack_date(&n, &packed(&n, 4, "date")?))
    }
}

// ---- timedelta --------------------------------------------------------------

/// The most days a `timedelta` holds, either way.
const MAX_DAYS: i64 = 999_999_999;

/// `datetime.timedelta(days, seconds, microseconds)`, normalised as
/// CPython writes it (`0 <= seconds < 86400`, `0 <= microseconds <
/// 1000000`, the sign in the days).
impl Reduce for TimeDelta {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let (days, secs, us) = timedelta_parts(self)?;
        s.reduction("datetime", "timedelta")
            .args(&(days, secs, us))
            .save()
    }
}

fn timedelta_parts(d: &TimeDelta) -> Result<(i64, i64, i64)> {
    let mut secs = d.num_seconds();
    let nanos = i64::from(d.subsec_nanos());
    if nanos % 1000 != 0 {
        return Err(unpicklable(format!(
            "{d} has nanoseconds; Python's timedelta holds microseconds"
        )));
    }
    let mut us = nanos / 1000;
    if us < 0 {
        us += 1_000_000;
        secs -= 1;
    }
    let days = secs.div_euclid(86_400);
    if !(-MAX_DAYS..=MAX_DAYS).contains(&days) {
        return Err(unpicklable(format!(
            "{d} is beyond Python's timedelta (±999999999 days)"
        )));
    }
    Ok((days, secs.rem_euclid(86_400), us))
}

impl Construct for TimeDelta {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("datetime", "timedelta")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 0, 3)?;
        let part = |i: usize| -> Result<i64> {
            match items.get(i) {
                Some(v) => args.item(i, v),
                None => Ok(0),
            }
        };
        let (days, secs, us) = (part(0)?, part(1)?, part(2)?);
        TimeDelta::try_days(days)
            .zip(TimeDelta::try_seconds(secs))
            .and_then(|(d, s)| d.checked_add(&s))
            .and_then(|t| t.checked_add(&TimeDelta::microseconds(us)))
            .ok_or_else(|| {
                args.error_msg(format!(
                    "timedelta({days}, {secs}, {us}) is out of range for chrono::TimeDelta"
                ))
            })
    }
}

// ---- tzinfo -----------------------------------------------------------------

/// A `tzinfo` as CPython pickles one: a fixed `datetime.timezone`, or a
/// `zoneinfo.ZoneInfo` named by its key.
///
/// A zone's offsets are not in the pickle (CPython looks the key up in the
/// time zone database when it loads it); this crate has no database, so a
/// zone is kept by name: convert with `chrono-tz` or `jiff` if you need
/// instants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TzInfo {
    /// `datetime.timezone(timedelta(seconds=offset), name)`;
    /// `timezone.utc` is an offset of 0 and no name.
    Fixed {
        /// East of UTC.
        offset: FixedOffset,
        /// The name given to `timezone()`, if any.
        name: Option<String>,
    },
    /// `zoneinfo.ZoneInfo(key)`, such as `"Europe/Paris"`.
    Zone(String),
}

impl TzInfo {
    /// `datetime.timezone.utc`.
    pub fn utc() -> TzInfo {
        TzInfo::Fixed {
            offset: Utc.fix(),
            name: None,
        }
    }
}

/// `timezone(timedelta(...), name)`, or `ZoneInfo._unpickle(key, 1)`,
/// as CPython writes them: the zone's constructor is
/// `getattr(ZoneInfo, '_unpickle')` at every protocol.
impl Reduce for TzInfo {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        match self {
            TzInfo::Fixed { offset, name } => {
                let delta = TimeDelta::seconds(i64::from(offset.local_minus_utc()));
                match name {
                    Some(n) => s
                        .reduction("datetime", "timezone")
                        .args(&(delta, n.as_str()))
                        .save(),
                    None => s.reduction("datetime", "timezone").args(&(delta,)).save(),
                }
            }
            // ZoneInfo.__reduce__ is (ZoneInfo._unpickle, (key, from_cache)).
            TzInfo::Zone(key) => s
                .reduction("zoneinfo", "ZoneInfo._unpickle")
                .args(&(key.as_str(), 1u8))
                .save(),
        }
    }
}

impl Construct for TzInfo {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(
            &node,
            &[("datetime", "timezone"), ("zoneinfo", "ZoneInfo._unpickle")],
        )?;
        no_extras(&call)?;
        if call.global().module == "zoneinfo" {
            let (args, items) = args_of(&call, 1, 2)?;
            return Ok(TzInfo::Zone(args.item(0, &items[0])?));
        }
        let (args, items) = args_of(&call, 1, 2)?;
        let delta: TimeDelta = args.item(0, &items[0])?;
        let name: Option<String> = match items.get(1) {
            Some(v) => args.item(1, v)?,
            None => None,
        };
        let secs = delta.num_seconds();
        if delta.subsec_nanos() != 0 {
            return Err(args.error_msg(format!(
                "the offset {delta} has microseconds, which chrono::FixedOffset cannot hold"
            )));
        }
        let offset = i32::try_from(secs)
            .ok()
            .and_then(FixedOffset::east_opt)
            .ok_or_else(|| {
                args.error_msg(format!("the offset {delta} is not within a day of UTC"))
            })?;
        Ok(TzInfo::Fixed { offset, name })
    }
}

/// Reads the optional tzinfo argument at `index`.
fn tz_arg(args: &Node<'_>, items: &[Value], index: usize) -> Result<Option<TzInfo>> {
    match items.get(index) {
        Some(v) => args.item(index, v),
        None => Ok(None),
    }
}

// ---- time -------------------------------------------------------------------

/// A `datetime.time`, with everything Python keeps: `fold` and the tzinfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyTime {
    /// The time of day (whole microseconds).
    pub time: NaiveTime,
    /// `fold`: the second of two equal wall times at a clock change.
    pub fold: bool,
    /// The tzinfo, if aware.
    pub tz: Option<TzInfo>,
}

impl From<NaiveTime> for PyTime {
    fn from(time: NaiveTime) -> PyTime {
        PyTime {
            time,
            fold: false,
            tz: None,
        }
    }
}

/// `datetime.time(packed[, tzinfo])`, as CPython writes it.
impl Reduce for PyTime {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let b = pack_time(&self.time, self.fold && s.protocol() > 3)?;
        match &self.tz {
            Some(tz) => s
                .reduction("datetime", "time")
                .args(&(bytes_arg(&b), tz))
                .save(),
            None => s
                .reduction("datetime", "time")
                .args(&(bytes_arg(&b),))
                .save(),
        }
    }
}

impl Construct for PyTime {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("datetime", "time")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 2)?;
        let (time, fold) =
            args.with_field("0", &items[0], |n| unpack_time(&n, &packed(&n, 6, "time")?))?;
        let tz = tz_arg(&args, items, 1)?;
        Ok(PyTime { time, fold, tz })
    }
}

/// A naive `datetime.time`.
impl Reduce for NaiveTime {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        PyTime::from(*self).reduce(s)
    }
}

/// From a naive `time` (`fold` dropped: it does not change a naive value).
impl Construct for NaiveTime {
    fn construct(node: Node<'_>) -> Result<Self> {
        let t = PyTime::construct(node)?;
        if t.tz.is_some() {
            return Err(node.error_msg(
                "this time has a tzinfo, which NaiveTime cannot hold; read it as reduce::stdlib::PyTime",
            ));
        }
        Ok(t.time)
    }
}

// ---- datetime ---------------------------------------------------------------

/// A `datetime.datetime`, with everything Python keeps: the wall time,
/// `fold` and the tzinfo (a zone by its key).
///
/// ```
/// use chrono::NaiveDate;
/// use reduce::stdlib::{PyDateTime, TzInfo};
///
/// reduce::registry().add_preset(&reduce::preset::STDLIB)?;
/// // datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("Europe/Paris")), protocol 3
/// let bytes = b"\x80\x03cdatetime\ndatetime\nq\x00C\n\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06q\x01cbuiltins\ngetattr\nq\x02czoneinfo\nZoneInfo\nq\x03X\t\x00\x00\x00_unpickleq\x04\x86q\x05Rq\x06X\x0c\x00\x00\x00Europe/Parisq\x07K\x01\x86q\x08Rq\t\x86q\nRq\x0b.";
/// let dt: PyDateTime = reduce::from_slice(bytes)?;
/// let want = NaiveDate::from_ymd_opt(2020, 1, 2).and_then(|d| d.and_hms_micro_opt(3, 4, 5, 6));
/// assert_eq!(Some(dt.local), want);
/// assert_eq!(dt.tz, Some(TzInfo::Zone("Europe/Paris".into())));
/// // Written back, the bytes are CPython's.
/// assert_eq!(reduce::to_vec_with_protocol(&dt, 3)?, bytes);
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyDateTime {
    /// The wall time: local to `tz` when aware.
    pub local: NaiveDateTime,
    /// `fold`: the second of two equal wall times at a clock change.
    pub fold: bool,
    /// The tzinfo, if aware.
    pub tz: Option<TzInfo>,
}

impl From<NaiveDateTime> for PyDateTime {
    fn from(local: NaiveDateTime) -> PyDateTime {
        PyDateTime {
            local,
            fold: false,
            tz: None,
        }
    }
}

impl From<DateTime<FixedOffset>> for PyDateTime {
    fn from(dt: DateTime<FixedOffset>) -> PyDateTime {
        PyDateTime {
            local: dt.naive_local(),
            fold: false,
            tz: Some(TzInfo::Fixed {
                offset: *dt.offset(),
                name: None,
            }),
        }
    }
}

impl From<DateTime<Utc>> for PyDateTime {
    fn from(dt: DateTime<Utc>) -> PyDateTime {
        PyDateTime {
            local: dt.naive_utc(),
            fold: false,
            tz: Some(TzInfo::utc()),
        }
    }
}

impl PyDateTime {
    /// As a `DateTime<FixedOffset>`, if the tzinfo is a fixed offset.
    pub fn to_fixed(&self) -> Option<DateTime<FixedOffset>> {
        match &self.tz {
            Some(TzInfo::Fixed { offset, .. }) => offset.from_local_datetime(&self.local).single(),
            _ => None,
        }
    }
}

/// `datetime.datetime(packed[, tzinfo])`, as CPython writes it.
impl Reduce for PyDateTime {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let d = pack_date(&self.local.date())?;
        let t = pack_time(&self.local.time(), false)?;
        // Month bit 7 is fold, from protocol 4 (as CPython's _getstate).
        let fold = if self.fold && s.protocol() > 3 {
            0x80
        } else {
            0
        };
        let b = [
            d[0],
            d[1],
            d[2] | fold,
            d[3],
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            t[5],
        ];
        match &self.tz {
            Some(tz) => s
                .reduction("datetime", "datetime")
                .args(&(bytes_arg(&b), tz))
                .save(),
            None => s
                .reduction("datetime", "datetime")
                .args(&(bytes_arg(&b),))
                .save(),
        }
    }
}

impl Construct for PyDateTime {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("datetime", "datetime")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 2)?;
        let (local, fold) = args.with_field("0", &items[0], |n| {
            let b = packed(&n, 10, "datetime")?;
            let date = unpack_date(&n, &b[..4])?;
            let (time, _) = unpack_time(&n, &b[4..])?;
            Ok((date.and_time(time), b[2] & 0x80 != 0))
        })?;
        let tz = tz_arg(&args, items, 1)?;
        Ok(PyDateTime { local, fold, tz })
    }
}

/// A naive `datetime.datetime`.
impl Reduce for NaiveDateTime {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        PyDateTime::from(*self).reduce(s)
    }
}

/// From a naive `datetime` (`fold` dropped: it does not change a naive
/// value).
impl Construct for NaiveDateTime {
    fn construct(node: Node<'_>) -> Result<Self> {
        let dt = PyDateTime::construct(node)?;
        if dt.tz.is_some() {
            return Err(node.error_msg(
                "this datetime is aware, which NaiveDateTime cannot hold; read it as DateTime<FixedOffset> or reduce::stdlib::PyDateTime",
            ));
        }
        Ok(dt.local)
    }
}

/// An aware `datetime` with a `datetime.timezone` of the same offset.
impl Reduce for DateTime<FixedOffset> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        PyDateTime::from(*self).reduce(s)
    }
}

/// From an aware `datetime` with a fixed `timezone` (its name dropped). A
/// `zoneinfo` zone is an error: its offset is not in the pickle.
impl Construct for DateTime<FixedOffset> {
    fn construct(node: Node<'_>) -> Result<Self> {
        aware(node, "DateTime<FixedOffset>")
    }
}

/// An aware `datetime` with a fixed `timezone`, for a `target` type (named
/// in the errors).
fn aware(node: Node<'_>, target: &str) -> Result<DateTime<FixedOffset>> {
    let dt = PyDateTime::construct(node)?;
    match &dt.tz {
        Some(TzInfo::Fixed { .. }) => dt
            .to_fixed()
            .ok_or_else(|| node.error_msg(format!("{} is out of chrono's range", dt.local))),
        Some(TzInfo::Zone(key)) => Err(node.error_msg(format!(
            "this datetime is in the zone {key:?}, whose offset is not in the pickle; read it as reduce::stdlib::PyDateTime"
        ))),
        None => Err(node.error_msg(format!(
            "this datetime is naive, which {target} cannot hold; read it as NaiveDateTime"
        ))),
    }
}

/// An aware `datetime` in `timezone.utc`.
impl Reduce for DateTime<Utc> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        PyDateTime::from(*self).reduce(s)
    }
}

/// From an aware `datetime` with a fixed `timezone`, as the same instant.
impl Construct for DateTime<Utc> {
    fn construct(node: Node<'_>) -> Result<Self> {
        aware(node, "DateTime<Utc>").map(|dt| dt.with_timezone(&Utc))
    }
}
