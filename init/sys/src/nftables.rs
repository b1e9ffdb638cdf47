//! nftables through nfnetlink: replace one table atomically, with no
//! `nft` binary and no libnftnl.
//!
//! A ruleset is a value ([`Table`]: chains, and rules as lists of the few
//! expressions keel uses). [`replace_batch`] turns one or more tables into
//! one nfnetlink batch, which the kernel applies as a single transaction:
//! 1. BATCH_BEGIN (subsystem nftables);
//! 2. per table: NEWTABLE without NLM_F_EXCL: creates the table if it is
//!    missing, so that 3 cannot fail on a first run;
//! 3. DELTABLE: the old table goes with all its chains and rules;
//! 4. NEWTABLE, then a NEWCHAIN per chain (base chains with their hook,
//!    priority and type), then a NEWRULE per rule, appended in order;
//! 5. BATCH_END.
//!
//! Either all of it takes effect or none (a failing message aborts the
//! transaction), and packets never see a half-built table. Every message in
//! the batch asks for an acknowledgement, so a failure names the message.
//!
//! Attribute values follow `include/uapi/linux/netfilter/nf_tables.h`:
//! integers in network byte order, nested attributes flagged NLA_F_NESTED,
//! register loads and comparisons on raw bytes in packet order.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, setsockopt, sockopt, MsgFlags, SockProtocol};
use nix::sys::time::TimeVal;

use crate::netlink::{ack_errno, attr, attr_str, message, message_flags, nest, open_socket};
use crate::netns::NetNs;
use crate::SysError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NF_ACCEPT: u32 = 1;
const NF_DROP: u32 = 0;
/// The verdict register (NFT_REG_VERDICT).
const REG_VERDICT: u32 = 0;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// A table's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 only (`table ip`).
    Ip,
    /// IPv4 and IPv6 (`table inet`): a filter that must not leave an IPv6
    /// way around it.
    Inet,
}

impl Family {
    fn proto(self) -> u8 {
        match self {
            Family::Ip => NFPROTO_IPV4,
            Family::Inet => NFPROTO_INET,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Inet => "inet",
        }
    }
}

/// The netfilter hooks of the ip family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

impl ChainType {
    fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// A base chain (policy accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
}

/// Where a payload load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network = 1,
    Transport = 2,
}

/// The meta keys keel loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// The layer 3 protocol of an inet table's packet (NFPROTO_IPV4: 2).
    NfProto = 15,
    IifName = 6,
    OifName = 7,
    L4Proto = 16,
}

/// The conntrack keys keel loads, both native-endian u32 bit sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state`: [`CT_ESTABLISHED`], [`CT_RELATED`], ...
    State = 0,
    /// `ct status`: IPS_DST_NAT is 0x20.
    Status = 2,
}

/// `ct state` bits (NF_CT_STATE_BIT of IP_CT_ESTABLISHED and IP_CT_RELATED).
pub const CT_ESTABLISHED: u32 = 1 << 1;
pub const CT_RELATED: u32 = 1 << 2;

/// The verdicts keel writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// The 16-byte data registers (NFT_REG_1..): a nat statement reads the
/// address from one and the port from the next.
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;

/// One expression of a rule; data are raw bytes in packet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load `len` bytes at `offset` from `base` into `dreg`.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Load a packet's meta datum into `dreg`.
    Meta { key: MetaKey, dreg: u32 },
    /// `sreg = (sreg & mask) ^ xor`, over `mask.len()` bytes.
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Continue only when `sreg op data`.
    Cmp { sreg: u32, op: CmpOp, data: Vec<u8> },
    /// Put `data` in `dreg`.
    Immediate { dreg: u32, data: Vec<u8> },
    /// The route type of the destination address (`fib daddr type`) in
    /// `dreg`, a native-endian u32 (RTN_LOCAL is 2).
    FibDaddrType { dreg: u32 },
    /// A conntrack datum (`ct state`, `ct status`) in `dreg`.
    Ct { key: CtKey, dreg: u32 },
    /// End the rule's evaluation with a verdict.
    Verdict(Verdict),
    /// Destination NAT of ip to the address in `addr` and the port in
    /// `port` (both registers, for min and max).
    Dnat { addr: u32, port: u32 },
    /// Source NAT to the address of the outgoing interface.
    Masquerade,
}

/// A rule: its chain and expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
}

/// A table, the unit keel replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn nested(out: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    nest(out, ty | NLA_F_NESTED, inner)
}

fn data_value(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    nested(out, ty, |p| attr(p, NFTA_DATA_VALUE, data));
}

/// `struct nfgenmsg`: family, version 0, resource id (big-endian).
fn nfgen(family: u8, res_id: u16) -> Vec<u8> {
    let mut p = vec![family, 0];
    p.extend_from_slice(&res_id.to_be_bytes());
    p
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// The name and attributes of an expression.
fn expr_attrs(e: &Expr) -> (&'static str, Vec<u8>) {
    let mut d = Vec::new();
    let name = match e {
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            attr(&mut d, 1, &be32(*dreg)); // NFTA_PAYLOAD_DREG
            attr(&mut d, 2, &be32(*base as u32)); // NFTA_PAYLOAD_BASE
            attr(&mut d, 3, &be32(*offset)); // NFTA_PAYLOAD_OFFSET
            attr(&mut d, 4, &be32(*len)); // NFTA_PAYLOAD_LEN
            "payload"
        }
        Expr::Meta { key, dreg } => {
            attr(&mut d, 1, &be32(*dreg)); // NFTA_META_DREG
            attr(&mut d, 2, &be32(*key as u32)); // NFTA_META_KEY
            "meta"
        }
        Expr::Bitwise { reg, mask, xor } => {
            attr(&mut d, 1, &be32(*reg)); // NFTA_BITWISE_SREG
            attr(&mut d, 2, &be32(*reg)); // NFTA_BITWISE_DREG
            attr(&mut d, 3, &be32(mask.len() as u32)); // NFTA_BITWISE_LEN
            data_value(&mut d, 4, mask); // NFTA_BITWISE_MASK
            data_value(&mut d, 5, xor); // NFTA_BITWISE_XOR
            "bitwise"
        }
        Expr::Cmp { sreg, op, data } => {
            attr(&mut d, 1, &be32(*sreg)); // NFTA_CMP_SREG
            attr(&mut d, 2, &be32(*op as u32)); // NFTA_CMP_OP
            data_value(&mut d, 3, data); // NFTA_CMP_DATA
            "cmp"
        }
        Expr::Immediate { dreg, data } => {
            attr(&mut d, 1, &be32(*dreg)); // NFTA_IMMEDIATE_DREG
            data_value(&mut d, 2, data); // NFTA_IMMEDIATE_DATA
            "immediate"
        }
        Expr::FibDaddrType { dreg } => {
            attr(&mut d, 1, &be32(*dreg)); // NFTA_FIB_DREG
            attr(&mut d, 2, &be32(3)); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
            attr(&mut d, 3, &be32(2)); // NFTA_FIB_FLAGS: NFTA_FIB_F_DADDR
            "fib"
        }
        Expr::Ct { key, dreg } => {
            attr(&mut d, 1, &be32(*dreg)); // NFTA_CT_DREG
            attr(&mut d, 2, &be32(*key as u32)); // NFTA_CT_KEY
            "ct"
        }
        Expr::Verdict(v) => {
            let code = match v {
                Verdict::Accept => NF_ACCEPT,
                Verdict::Drop => NF_DROP,
            };
            attr(&mut d, 1, &be32(REG_VERDICT)); // NFTA_IMMEDIATE_DREG
            nested(&mut d, 2, |p| {
                // NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE } }
                nested(p, NFTA_DATA_VERDICT, |p| {
                    attr(p, NFTA_VERDICT_CODE, &be32(code))
                })
            });
            "immediate"
        }
        Expr::Dnat { addr, port } => {
            attr(&mut d, 1, &be32(1)); // NFTA_NAT_TYPE: NFT_NAT_DNAT
            attr(&mut d, 2, &be32(NFPROTO_IPV4 as u32)); // NFTA_NAT_FAMILY
            attr(&mut d, 3, &be32(*addr)); // NFTA_NAT_REG_ADDR_MIN
            attr(&mut d, 4, &be32(*addr)); // NFTA_NAT_REG_ADDR_MAX
            attr(&mut d, 5, &be32(*port)); // NFTA_NAT_REG_PROTO_MIN
            attr(&mut d, 6, &be32(*port)); // NFTA_NAT_REG_PROTO_MAX
                                           // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
            attr(&mut d, 7, &be32(0x1 | 0x2)); // NFTA_NAT_FLAGS
            "nat"
        }
        Expr::Masquerade => "masq",
    };
    (name, d)
}

fn table_payload(family: Family, name: &str) -> Vec<u8> {
    let mut p = nfgen(family.proto(), 0);
    attr_str(&mut p, NFTA_TABLE_NAME, name);
    p
}

fn chain_payload(t: &Table, c: &Chain) -> Vec<u8> {
    let mut p = nfgen(t.family.proto(), 0);
    attr_str(&mut p, NFTA_CHAIN_TABLE, &t.name);
    attr_str(&mut p, NFTA_CHAIN_NAME, &c.name);
    nested(&mut p, NFTA_CHAIN_HOOK, |p| {
        attr(p, NFTA_HOOK_HOOKNUM, &be32(c.hook as u32));
        attr(p, NFTA_HOOK_PRIORITY, &c.priority.to_be_bytes());
    });
    attr(&mut p, NFTA_CHAIN_POLICY, &be32(NF_ACCEPT));
    attr_str(&mut p, NFTA_CHAIN_TYPE, c.kind.as_str());
    p
}

fn rule_payload(t: &Table, r: &Rule) -> Vec<u8> {
    let mut p = nfgen(t.family.proto(), 0);
    attr_str(&mut p, NFTA_RULE_TABLE, &t.name);
    attr_str(&mut p, NFTA_RULE_CHAIN, &r.chain);
    nested(&mut p, NFTA_RULE_EXPRESSIONS, |p| {
        for e in &r.exprs {
            let (name, data) = expr_attrs(e);
            nested(p, NFTA_LIST_ELEM, |p| {
                attr_str(p, NFTA_EXPR_NAME, name);
                if !data.is_empty() {
                    nested(p, NFTA_EXPR_DATA, |p| p.extend_from_slice(&data));
                }
            });
        }
    });
    p
}

/// A batch: its bytes and, per acknowledged message, what it does (named
/// in errors).
#[derive(Debug, Clone)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub messages: BTreeMap<u32, String>,
}

struct Builder {
    seq: u32,
    batch: Batch,
}

impl Builder {
    fn new(first_seq: u32) -> Builder {
        let mut b = Builder {
            seq: first_seq,
            batch: Batch {
                bytes: Vec::new(),
                messages: BTreeMap::new(),
            },
        };
        let begin = message_flags(
            NFNL_MSG_BATCH_BEGIN,
            0,
            b.seq,
            &nfgen(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES),
        );
        b.batch.bytes.extend_from_slice(&begin);
        b
    }

    fn push(&mut self, msg: u16, flags: u16, payload: &[u8], what: String) {
        self.seq = self.seq.wrapping_add(1);
        let m = message(nft_type(msg), flags, self.seq, payload);
        self.batch.bytes.extend_from_slice(&m);
        self.batch.messages.insert(self.seq, what);
    }

    fn finish(mut self) -> Batch {
        self.seq = self.seq.wrapping_add(1);
        let end = message_flags(
            NFNL_MSG_BATCH_END,
            0,
            self.seq,
            &nfgen(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES),
        );
        self.batch.bytes.extend_from_slice(&end);
        self.batch
    }

    /// Make sure the table exists, then delete it: the delete cannot fail
    /// for a missing table, and kernels before DESTROYTABLE (6.3) do it too.
    fn drop_table(&mut self, family: Family, name: &str) {
        let t = table_payload(family, name);
        let f = family.as_str();
        self.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            &t,
            format!("ensure table {f} {name}"),
        );
        self.push(NFT_MSG_DELTABLE, 0, &t, format!("delete table {f} {name}"));
    }
}

/// The batch that replaces the tables `ts`, all or none (see the module's
/// steps).
pub fn replace_batch(ts: &[Table], first_seq: u32) -> Batch {
    let mut b = Builder::new(first_seq);
    for t in ts {
        b.drop_table(t.family, &t.name);
        b.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            &table_payload(t.family, &t.name),
            format!("add table {} {}", t.family.as_str(), t.name),
        );
        for c in &t.chains {
            b.push(
                NFT_MSG_NEWCHAIN,
                NLM_F_CREATE,
                &chain_payload(t, c),
                format!("add chain {} to table {}", c.name, t.name),
            );
        }
        for (i, r) in t.rules.iter().enumerate() {
            b.push(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                &rule_payload(t, r),
                format!("add rule {i} to chain {} of table {}", r.chain, t.name),
            );
        }
    }
    b.finish()
}

/// The batch that removes table `name` of `family` (a missing one
/// included).
pub fn delete_batch(family: Family, name: &str, first_seq: u32) -> Batch {
    let mut b = Builder::new(first_seq);
    b.drop_table(family, name);
    b.finish()
}

/// A NETLINK_NETFILTER socket.
pub struct Nft {
    fd: OwnedFd,
    seq: u32,
}

fn err(op: &'static str, target: &str) -> impl FnOnce(nix::Error) -> SysError {
    let target = target.to_string();
    move |source| SysError::Nftables { op, target, source }
}

impl Nft {
    pub fn open() -> Result<Nft, SysError> {
        let fd = open_socket(
            SockProtocol::NetlinkNetFilter,
            "nfnetlink",
            "nfnetlink bind",
        )?;
        // A batch the kernel stops reading would leave us waiting for the
        // acknowledgements of its unread messages: bound the wait.
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::from(libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            }),
        )
        .map_err(|source| SysError::Socket {
            what: "nfnetlink receive timeout",
            source,
        })?;
        Ok(Nft { fd, seq: 1 })
    }

    /// A socket inside the network namespace `ns`.
    pub fn open_in(ns: NetNs<'_>) -> Result<Nft, SysError> {
        crate::netns::run_in_ns(ns, Nft::open)?
    }

    /// Replace the tables `ts` in one transaction.
    pub fn replace(&mut self, ts: &[Table]) -> Result<(), SysError> {
        let b = replace_batch(ts, self.seq);
        let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
        self.run(b, &names.join(", "))
    }

    /// Remove table `name` of `family`, missing or not.
    pub fn delete(&mut self, family: Family, name: &str) -> Result<(), SysError> {
        let b = delete_batch(family, name, self.seq);
        self.run(b, name)
    }

    fn run(&mut self, b: Batch, table: &str) -> Result<(), SysError> {
        let last = b.messages.keys().next_back().copied().unwrap_or(self.seq);
        self.seq = last.wrapping_add(2);
        send(self.fd.as_raw_fd(), &b.bytes, MsgFlags::empty())
            .map_err(err("send batch for table", table))?;
        let mut pending = b.messages;
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(err("read the answers for table", table))?;
            let mut done = Vec::new();
            for (seq, what) in &pending {
                match ack_errno(&buf[..n], *seq) {
                    Some(0) => done.push(*seq),
                    Some(e) => {
                        return Err(SysError::Nftables {
                            op: "apply",
                            target: what.clone(),
                            source: nix::Error::from_raw(e),
                        })
                    }
                    None => {}
                }
            }
            for s in done {
                pending.remove(&s);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(type, flags, seq, payload)` of each message of a batch.
    fn split(b: &[u8]) -> Vec<(u16, u16, u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap());
            let fl = u16::from_ne_bytes(b[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap());
            out.push((ty, fl, seq, &b[at + 16..at + len]));
            assert_eq!(len % 4, 0, "messages stay aligned");
            at += len;
        }
        out
    }

    fn table() -> Table {
        Table {
            family: Family::Ip,
            name: "t".into(),
            chains: vec![Chain {
                name: "post".into(),
                kind: ChainType::Nat,
                hook: Hook::Postrouting,
                priority: 100,
            }],
            rules: vec![Rule {
                chain: "post".into(),
                exprs: vec![
                    Expr::Meta {
                        key: MetaKey::OifName,
                        dreg: REG_1,
                    },
                    Expr::Masquerade,
                ],
            }],
        }
    }

    /// An inet filter table: `iifname "br0" ct state established,related
    /// accept; iifname "br0" drop`.
    fn filter() -> Table {
        let iif = |name: &[u8]| {
            let mut n = [0u8; 16];
            n[..name.len()].copy_from_slice(name);
            [
                Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG_1,
                },
                Expr::Cmp {
                    sreg: REG_1,
                    op: CmpOp::Eq,
                    data: n.to_vec(),
                },
            ]
        };
        let mut est = iif(b"br0").to_vec();
        est.extend([
            Expr::Ct {
                key: CtKey::State,
                dreg: REG_1,
            },
            Expr::Bitwise {
                reg: REG_1,
                mask: (CT_ESTABLISHED | CT_RELATED).to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Neq,
                data: vec![0; 4],
            },
            Expr::Verdict(Verdict::Accept),
        ]);
        let mut drop = iif(b"br0").to_vec();
        drop.push(Expr::Verdict(Verdict::Drop));
        Table {
            family: Family::Inet,
            name: "f".into(),
            chains: vec![Chain {
                name: "input".into(),
                kind: ChainType::Filter,
                hook: Hook::Input,
                priority: 0,
            }],
            rules: vec![
                Rule {
                    chain: "input".into(),
                    exprs: est,
                },
                Rule {
                    chain: "input".into(),
                    exprs: drop,
                },
            ],
        }
    }

    #[test]
    fn verdicts_and_families() {
        let b = replace_batch(&[table(), filter()], 1);
        let m = split(&b.bytes);
        // Two tables: 3 table messages, a chain, rules for each.
        assert_eq!(m.len(), 1 + (3 + 1 + 1) + (3 + 1 + 2) + 1);
        // The inet table's messages carry NFPROTO_INET.
        assert_eq!(m[6].3[0], NFPROTO_INET, "ensure table inet f");
        assert_eq!(b.messages[&7], "ensure table inet f");
        // `drop`: an immediate into the verdict register with the verdict
        // nested twice.
        let r = m[m.len() - 2].3;
        let drop = [
            8u8, 0, 1, 0, 0, 0, 0, 0, // NFTA_IMMEDIATE_DREG: NFT_REG_VERDICT
            16, 0, 2, 0x80, // NFTA_IMMEDIATE_DATA, nested
            12, 0, 2, 0x80, // NFTA_DATA_VERDICT, nested
            8, 0, 1, 0, 0, 0, 0, 0, // NFTA_VERDICT_CODE: NF_DROP
        ];
        assert!(r.windows(drop.len()).any(|w| w == drop), "{r:?}");
    }

    #[test]
    fn batch_layout() {
        let b = replace_batch(&[table()], 10);
        let m = split(&b.bytes);
        let types: Vec<u16> = m.iter().map(|x| x.0).collect();
        assert_eq!(
            types,
            [
                NFNL_MSG_BATCH_BEGIN,
                nft_type(NFT_MSG_NEWTABLE),
                nft_type(NFT_MSG_DELTABLE),
                nft_type(NFT_MSG_NEWTABLE),
                nft_type(NFT_MSG_NEWCHAIN),
                nft_type(NFT_MSG_NEWRULE),
                NFNL_MSG_BATCH_END
            ]
        );
        let seqs: Vec<u32> = m.iter().map(|x| x.2).collect();
        assert_eq!(seqs, (10..17).collect::<Vec<_>>());
        // The batch markers carry the subsystem, big-endian, and no ACK flag.
        assert_eq!(m[0].3, &[0, 0, 0, 10]);
        assert_eq!(m[0].1 & 0x4, 0);
        assert_ne!(m[1].1 & 0x4, 0);
        assert_eq!(b.messages.len(), 5);
        assert_eq!(b.messages[&15], "add rule 0 to chain post of table t");
        // The chain: nfgenmsg ip, then table "t", name "post", the nested hook
        // with the priority big-endian.
        let c = m[4].3;
        assert_eq!(&c[..4], &[NFPROTO_IPV4, 0, 0, 0]);
        let hook = [
            20u8, 0, 4, 0x80, // NFTA_CHAIN_HOOK | NLA_F_NESTED, 20 bytes
            8, 0, 1, 0, 0, 0, 0, 4, // hooknum: postrouting
            8, 0, 2, 0, 0, 0, 0, 100, // priority 100
        ];
        assert!(c.windows(hook.len()).any(|w| w == hook), "{c:?}");
        // The masq expression is a list element with a name and no data.
        let r = m[5].3;
        let masq = [
            16u8, 0, 1, 0x80, 9, 0, 1, 0, b'm', b'a', b's', b'q', 0, 0, 0, 0,
        ];
        assert!(r.ends_with(&masq), "{r:?}");
    }

    #[test]
    fn delete_layout() {
        let b = delete_batch(Family::Ip, "keel", 1);
        let m = split(&b.bytes);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].0, nft_type(NFT_MSG_DELTABLE));
        assert_eq!(
            &m[2].3[4..],
            &[9, 0, 1, 0, b'k', b'e', b'e', b'l', 0, 0, 0, 0]
        );
    }

    #[test]
    fn privileged_replace_in_a_scratch_namespace() {
        if !keel_testkit::need_root() {
            return;
        }
        // As root, keel's namespace and nfnetlink code must work: an error
        // fails the test (it is not the environment's).
        let ns = crate::netns::create().expect("create a network namespace");
        use std::os::fd::AsFd;
        let mut nft = Nft::open_in(NetNs::Fd(ns.as_fd())).expect("open nfnetlink in it");
        nft.replace(&[table()]).unwrap();
        // Twice: the second replaces the first.
        nft.replace(&[table()]).unwrap();
        // With an inet filter table beside it, in the same transaction.
        nft.replace(&[table(), filter()]).unwrap();
        // A rule naming a missing chain fails, names the message, and
        // nothing of the batch is applied (the filter table is unchanged).
        let mut bad = table();
        bad.rules[0].chain = "nowhere".into();
        let e = nft.replace(&[bad, filter()]).unwrap_err().to_string();
        assert!(e.contains("add rule 0 to chain nowhere"), "{e}");
        nft.delete(Family::Ip, "t").unwrap();
        nft.delete(Family::Ip, "t").unwrap();
        nft.delete(Family::Inet, "f").unwrap();
    }
}
