//! `ipaddress`, `uuid.UUID` and `pathlib` paths.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, PathBuf};
use std::str::FromStr;

use super::{args_of, call_of, no_extras};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::registry::Registry;
use crate::typed::save::{Reduce, Saver};
use crate::value::Value;

pub(super) fn install(r: &mut Registry) -> Result<()> {
    r.register_constructor("ipaddress", "IPv4Address", Ipv4Addr::construct)?;
    r.register_constructor("ipaddress", "IPv6Address", Ipv6Addr::construct)?;
    for name in ["IPv4Network", "IPv6Network"] {
        r.register_constructor("ipaddress", name, IpNetwork::construct)?;
    }
    for name in ["IPv4Interface", "IPv6Interface"] {
        r.register_constructor("ipaddress", name, IpInterface::construct)?;
    }
    for name in ["PurePosixPath", "PosixPath"] {
        r.register_constructor("pathlib", name, PathBuf::construct)?;
    }
    #[cfg(feature = "uuid")]
    r.register_constructor("uuid", "UUID", uuid::Uuid::construct)?;
    Ok(())
}

// ---- addresses --------------------------------------------------------------

/// `ipaddress.IPv4Address(int)`, as CPython writes it.
impl Reduce for Ipv4Addr {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("ipaddress", "IPv4Address")
            .args(&(u32::from(*self),))
            .save()
    }
}

/// From `IPv4Address(int)` or `IPv4Address('1.2.3.4')`.
impl Construct for Ipv4Addr {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("ipaddress", "IPv4Address")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 1)?;
        match args.graph().resolve(&items[0]) {
            Value::Str(_) => {
                let s: String = args.item(0, &items[0])?;
                s.parse()
                    .map_err(|_| args.error_msg(format!("expected an IPv4 address, found {s:?}")))
            }
            _ => args.item::<u32>(0, &items[0]).map(Ipv4Addr::from),
        }
    }
}

/// `ipaddress.IPv6Address('::1')`, as CPython writes it (a string, which
/// can carry a scope id; `Ipv6Addr` has none).
impl Reduce for Ipv6Addr {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("ipaddress", "IPv6Address")
            .args(&(self.to_string(),))
            .save()
    }
}

/// From `IPv6Address('::1')` or `IPv6Address(int)`. A scope id
/// (`fe80::1%eth0`) is an error: `Ipv6Addr` cannot hold it.
impl Construct for Ipv6Addr {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("ipaddress", "IPv6Address")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 1)?;
        match args.graph().resolve(&items[0]) {
            Value::Str(_) => {
                let s: String = args.item(0, &items[0])?;
                if let Some((_, scope)) = s.split_once('%') {
                    return Err(args.error_msg(format!(
                        "the IPv6 address {s:?} has a scope id ({scope:?}), which std::net::Ipv6Addr cannot hold"
                    )));
                }
                s.parse()
                    .map_err(|_| args.error_msg(format!("expected an IPv6 address, found {s:?}")))
            }
            _ => args.item::<u128>(0, &items[0]).map(Ipv6Addr::from),
        }
    }
}

/// Either address.
impl Reduce for IpAddr {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        match self {
            IpAddr::V4(a) => a.reduce(s),
            IpAddr::V6(a) => a.reduce(s),
        }
    }
}

impl Construct for IpAddr {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(
            &node,
            &[("ipaddress", "IPv4Address"), ("ipaddress", "IPv6Address")],
        )?;
        if call.global().name == "IPv4Address" {
            Ipv4Addr::construct(node).map(IpAddr::V4)
        } else {
            Ipv6Addr::construct(node).map(IpAddr::V6)
        }
    }
}

// ---- networks and interfaces -----------------------------------------------

/// An address and a prefix length, parsed from and shown as `addr/len`.
fn parse_prefixed(s: &str, what: &str) -> Result<(IpAddr, u8)> {
    let bad = || {
        Error::new(ErrorKind::Invalid(format!(
            "expected an {what} like '10.0.0.0/8', found {s:?}"
        )))
    };
    let (addr, len) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = if len.is_empty() {
        max
    } else {
        len.parse::<u8>().map_err(|_| bad())?
    };
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

fn host_bits(addr: IpAddr, prefix: u8) -> bool {
    match addr {
        IpAddr::V4(a) => prefix < 32 && u32::from(a) & (u32::MAX >> prefix) != 0,
        IpAddr::V6(a) => prefix < 128 && u128::from(a) & (u128::MAX >> prefix) != 0,
    }
}

/// `ipaddress.IPv4Network` or `IPv6Network`: an address whose host bits are
/// zero, and a prefix length.
///
/// ```
/// use reduce::stdlib::IpNetwork;
///
/// let net: IpNetwork = "10.0.0.0/8".parse()?;
/// assert_eq!(net.prefix(), 8);
/// assert!("10.0.0.1/8".parse::<IpNetwork>().is_err()); // host bits set, as Python says
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// A network; fails if `prefix` is too long for the address or host
    /// bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNetwork> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max || host_bits(addr, prefix) {
            return Err(Error::new(ErrorKind::Invalid(format!(
                "{addr}/{prefix} is not a network: the prefix is longer than {max} bits or host bits are set"
            ))));
        }
        Ok(IpNetwork { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for IpNetwork {
    type Err = Error;

    fn from_str(s: &str) -> Result<IpNetwork> {
        let (addr, prefix) = parse_prefixed(s, "IP network")?;
        IpNetwork::new(addr, prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ipaddress.IPv4Interface` or `IPv6Interface`: an address with the prefix
/// length of its network (host bits may be set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpInterface {
    addr: IpAddr,
    prefix: u8,
}

impl IpInterface {
    /// An interface; fails if `prefix` is too long for the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpInterface> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::new(ErrorKind::Invalid(format!(
                "the prefix of {addr}/{prefix} is longer than {max} bits"
            ))));
        }
        Ok(IpInterface { addr, prefix })
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for IpInterface {
    type Err = Error;

    fn from_str(s: &str) -> Result<IpInterface> {
        let (addr, prefix) = parse_prefixed(s, "IP interface")?;
        IpInterface::new(addr, prefix)
    }
}

impl fmt::Display for IpInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

macro_rules! prefixed {
    ($t:ident, $v4:literal, $v6:literal) => {
        /// `ipaddress.IPv4…('a.b.c.d/n')` or `IPv6…('…/n')`, as CPython
        /// writes it.
        impl Reduce for $t {
            fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
                let name = if self.addr.is_ipv4() { $v4 } else { $v6 };
                s.reduction("ipaddress", name)
                    .args(&(self.to_string(),))
                    .save()
            }
        }

        impl Construct for $t {
            fn construct(node: Node<'_>) -> Result<Self> {
                let call = call_of(&node, &[("ipaddress", $v4), ("ipaddress", $v6)])?;
                no_extras(&call)?;
                let (args, items) = args_of(&call, 1, 1)?;
                let s: String = args.item(0, &items[0])?;
                let made: $t = s
                    .parse()
                    .map_err(|e: Error| args.error_msg(e.to_string()))?;
                if made.addr.is_ipv4() != (call.global().name == $v4) {
                    return Err(args.error_msg(format!(
                        "{s:?} is not an address of the family {} names",
                        call.global()
                    )));
                }
                Ok(made)
            }
        }
    };
}
prefixed!(IpNetwork, "IPv4Network", "IPv6Network");
prefixed!(IpInterface, "IPv4Interface", "IPv6Interface");

// ---- uuid -------------------------------------------------------------------

/// `uuid.UUID` as CPython writes it: an instance with the state
/// `{'int': n}` (`copyreg.__newobj__` then `BUILD`; protocols 0 and 1 use
/// `copyreg._reconstructor`).
#[cfg(feature = "uuid")]
impl Reduce for uuid::Uuid {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let state = std::collections::BTreeMap::from([("int", self.as_u128())]);
        s.reduction("uuid", "UUID").new_obj().state(&state).save()
    }
}

/// From CPython's form (its `is_safe` entry, which says how the UUID was
/// generated, is dropped), or `UUID('12345678-...')` written by hand.
#[cfg(feature = "uuid")]
impl Construct for uuid::Uuid {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("uuid", "UUID")])?;
        if let Some(state) = call.state() {
            let n: Option<u128> = state.with(|n| n.state_field("int"))?;
            return n
                .map(uuid::Uuid::from_u128)
                .ok_or_else(|| node.error_msg("the state of a uuid.UUID has no 'int'"));
        }
        let (args, items) = args_of(&call, 1, 1)?;
        let s: String = args.item(0, &items[0])?;
        s.parse()
            .map_err(|_| args.error_msg(format!("expected a UUID, found {s:?}")))
    }
}

// ---- paths ------------------------------------------------------------------

/// `pathlib.PurePosixPath(*parts)`, as CPython writes it. (A pure path,
/// which loads on any system; `PosixPath` cannot be made on Windows.)
/// Paths that are not UTF-8 are an error.
impl Reduce for PathBuf {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        self.as_path().reduce(s)
    }
}

impl Reduce for std::path::Path {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let mut parts = Vec::new();
        for c in self.components() {
            match c {
                Component::RootDir => parts.push("/"),
                // Python drops "." inside a path, as Rust does after the start.
                Component::CurDir => {}
                Component::ParentDir => parts.push(".."),
                Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| {
                    Error::new(ErrorKind::Unpicklable(format!(
                        "the path {self:?} is not UTF-8, which a Python str cannot hold here"
                    )))
                })?),
                Component::Prefix(_) => {
                    return Err(Error::new(ErrorKind::Unpicklable(format!(
                        "the path {self:?} has a Windows prefix, which PurePosixPath cannot hold"
                    ))))
                }
            }
        }
        let args = crate::typed::save::FnReduce(|s: &mut Saver<'_, '_>| {
            s.tuple(parts.len(), |s| parts.iter().try_for_each(|p| s.str(p)))
        });
        s.reduction("pathlib", "PurePosixPath").args(&args).save()
    }
}

/// From `PurePosixPath(*parts)` or `PosixPath(*parts)`; no parts is `.`.
impl Construct for PathBuf {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(
            &node,
            &[("pathlib", "PurePosixPath"), ("pathlib", "PosixPath")],
        )?;
        no_extras(&call)?;
        let args = call.args();
        let items = args.items()?;
        if items.is_empty() {
            return Ok(PathBuf::from("."));
        }
        let mut path = PathBuf::new();
        for (i, item) in items.iter().enumerate() {
            let part: String = args.item(i, item)?;
            path.push(part);
        }
        Ok(path)
    }
}
