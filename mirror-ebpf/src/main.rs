//! Kernel side of the tap: selects pod egress TCP flows and hands them to the daemon's listener.
//!
//! Two programs cooperate (see `../shared/guide/interception.md` for the measured facts):
//! - `mirror_tc_ingress` (TC ingress on each pod's host-side interface). For a SYN whose
//!   destination matches an intercept rule, and only while a listener is registered and the
//!   daemon's heartbeat is fresh, it records the flow in `PENDING_SYNS` and sets the mark that
//!   policy routing turns into local delivery. For later packets it steers the flow to the socket
//!   that already owns its 4-tuple, if any. Everything else returns `TC_ACT_UNSPEC`, untouched,
//!   so the next program (a CNI's) still runs.
//! - `mirror_sk_lookup` (the node's network namespace). When the stack looks for a listener for
//!   a flow the classifier selected, it picks the daemon's transparent listener from the SOCKMAP.
//!   Because it runs at listener lookup, a pod reusing a 4-tuple whose proxy side is in TIME_WAIT
//!   still gets a fresh connection.
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::size_of, ptr::addr_of};

use aya_ebpf::{
    bindings::{bpf_sock_tuple, sk_action::SK_PASS, BPF_F_CURRENT_NETNS, TC_ACT_UNSPEC},
    helpers::{
        bpf_ktime_get_ns, bpf_map_lookup_elem, bpf_sk_assign, bpf_sk_release, bpf_skc_lookup_tcp,
    },
    macros::{classifier, map, sk_lookup},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, SockMap},
    programs::{SkLookupContext, TcContext},
};
use mirror_common::{
    counter, FlowKey, InterceptKey, InterceptValue, Settings, ANY_PORT, FAMILY_V4, FAMILY_V6,
    LISTENER_SLOTS, LISTENER_V4, LISTENER_V6, MAX_INTERCEPT_RULES, MAX_INTERFACES,
    MAX_PENDING_SYNS, STEER_GENERATION,
};

#[map]
static INTERCEPT_RULES: LpmTrie<InterceptKey, InterceptValue> =
    LpmTrie::with_max_entries(MAX_INTERCEPT_RULES, 0);

#[map]
static SELECTING: HashMap<u32, u32> = HashMap::with_max_entries(MAX_INTERFACES, 0);

#[map]
static LISTENERS: SockMap = SockMap::with_max_entries(LISTENER_SLOTS, 0);

#[map]
static PENDING_SYNS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(MAX_PENDING_SYNS, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
static HEARTBEAT: Array<u64> = Array::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// When this CPU last logged a watchdog pass (ns), to log at most once a second per CPU.
#[map]
static WATCHDOG_LOGGED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPV6_HDR_LEN: usize = 40;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
/// `TCP_TIME_WAIT` in the kernel's `enum tcp_state` (as `bpf_sock.state` reports it).
const TCP_TIME_WAIT: u32 = 6;

/// The parts of a packet the classifier decides on.
struct Packet {
    family: u32,
    src: [u32; 4],
    dst: [u32; 4],
    src_port: u16,
    dst_port: u16,
    flags: u8,
}

#[classifier]
pub fn mirror_tc_ingress(ctx: TcContext) -> i32 {
    match try_tc_ingress(&ctx) {
        Ok(action) | Err(action) => action,
    }
}

fn try_tc_ingress(ctx: &TcContext) -> Result<i32, i32> {
    let packet = parse(ctx).ok_or(TC_ACT_UNSPEC)?;
    let settings = SETTINGS.get(0).ok_or(TC_ACT_UNSPEC)?;
    if packet.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN {
        // New flows: the rules in force, on interfaces that select.
        // SAFETY: the value is not read, only its presence.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        if matches_rule(&packet, settings.rules_generation as u8)
            && unsafe { SELECTING.get(&ifindex) }.is_some()
        {
            select_new_flow(ctx, &packet, settings);
        }
    } else if matches_rule(&packet, STEER_GENERATION) {
        // Later packets: any rule in force since the daemon started, so that reloads never cut
        // flows already intercepted.
        steer_existing_flow(ctx, &packet, settings);
    }
    Ok(TC_ACT_UNSPEC)
}

fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).ok()?);
    let (family, src, dst, l4) = match ethertype {
        ETH_P_IP => {
            let version_ihl: u8 = ctx.load(ETH_HDR_LEN).ok()?;
            if version_ihl >> 4 != 4 {
                return None;
            }
            let frag: u16 = u16::from_be(ctx.load(ETH_HDR_LEN + 6).ok()?);
            // Fragments (MF set or non-zero offset) are never selected.
            if frag & 0x3fff != 0 || ctx.load::<u8>(ETH_HDR_LEN + 9).ok()? != IPPROTO_TCP {
                return None;
            }
            let src: u32 = ctx.load(ETH_HDR_LEN + 12).ok()?;
            let dst: u32 = ctx.load(ETH_HDR_LEN + 16).ok()?;
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            (FAMILY_V4, [src, 0, 0, 0], [dst, 0, 0, 0], ETH_HDR_LEN + ihl)
        }
        ETH_P_IPV6 => {
            // Only TCP directly after the fixed header; extension headers are left alone.
            if ctx.load::<u8>(ETH_HDR_LEN + 6).ok()? != IPPROTO_TCP {
                return None;
            }
            let src: [u32; 4] = ctx.load(ETH_HDR_LEN + 8).ok()?;
            let dst: [u32; 4] = ctx.load(ETH_HDR_LEN + 24).ok()?;
            (FAMILY_V6, src, dst, ETH_HDR_LEN + IPV6_HDR_LEN)
        }
        _ => return None,
    };
    let src_port = u16::from_be(ctx.load(l4).ok()?);
    let dst_port = u16::from_be(ctx.load(l4 + 2).ok()?);
    let flags: u8 = ctx.load(l4 + 13).ok()?;
    Some(Packet {
        family,
        src,
        dst,
        src_port,
        dst_port,
        flags,
    })
}

fn matches_rule(packet: &Packet, generation: u8) -> bool {
    let key = |port| {
        let data = if packet.family == FAMILY_V4 {
            InterceptKey::v4(generation, port, packet.dst[0].to_ne_bytes())
        } else {
            InterceptKey::v6(generation, port, words_to_bytes(&packet.dst))
        };
        Key::new(InterceptKey::LOOKUP_PREFIX_LEN, data)
    };
    INTERCEPT_RULES.get(key(packet.dst_port)).is_some()
        || INTERCEPT_RULES.get(key(ANY_PORT)).is_some()
}

fn words_to_bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// A SYN to an intercepted destination: select it only if the daemon can take it.
fn select_new_flow(ctx: &TcContext, packet: &Packet, settings: &Settings) {
    let slot = if packet.family == FAMILY_V4 {
        LISTENER_V4
    } else {
        LISTENER_V6
    };
    if !listener_registered(slot) {
        count(counter::PASSED_NO_LISTENER);
        return;
    }
    if settings.watchdog_timeout_ns != 0 {
        let beat = HEARTBEAT.get(0).copied().unwrap_or(0);
        // SAFETY: a helper with no arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        if beat == 0 || now.wrapping_sub(beat) > settings.watchdog_timeout_ns {
            count(counter::PASSED_WATCHDOG);
            if let Some(logged) = WATCHDOG_LOGGED.get_ptr_mut(0) {
                // SAFETY: a per-CPU slot, written only by this CPU with preemption disabled.
                unsafe {
                    if now.wrapping_sub(*logged) > 1_000_000_000 {
                        *logged = now;
                        aya_log_ebpf::warn!(
                            ctx,
                            "watchdog: no heartbeat from the daemon's accept loop for {} ms; new flows go direct",
                            now.wrapping_sub(beat) / 1_000_000
                        );
                    }
                }
            }
            return;
        }
    }
    let flow = FlowKey {
        remote_addr: packet.src,
        local_addr: packet.dst,
        remote_port: packet.src_port,
        local_port: packet.dst_port,
        family: packet.family,
    };
    if PENDING_SYNS.insert(&flow, &0, 0).is_err() {
        return;
    }
    mark(ctx, settings);
    count(counter::SYN_MATCHED);
}

/// Whether a listener sits in `slot`. Kept out of line so that LLVM never merges this socket
/// pointer with the one `steer_existing_flow` looks up (the verifier rejects such merges).
#[inline(never)]
fn listener_registered(slot: u32) -> bool {
    // SAFETY: LISTENERS is a SOCKMAP; the lookup returns a referenced socket or null, and every
    // non-null result is released before returning.
    unsafe {
        let sk = bpf_map_lookup_elem(addr_of!(LISTENERS) as *mut c_void, addr_of!(slot).cast());
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk);
    }
    true
}

/// A non-SYN packet to an intercepted destination: if the node owns a socket for its 4-tuple
/// (the daemon's side of an intercepted flow, in any state), deliver it there; otherwise the
/// flow was never intercepted and the packet passes untouched.
#[inline(never)]
fn steer_existing_flow(ctx: &TcContext, packet: &Packet, settings: &Settings) {
    // SAFETY: bpf_sock_tuple is plain data; all-zero is a valid value.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let tuple_len = if packet.family == FAMILY_V4 {
        // SAFETY: writing plain integers into the ipv4 member of a zeroed union.
        unsafe {
            let v4 = &mut tuple.__bindgen_anon_1.ipv4;
            v4.saddr = packet.src[0];
            v4.daddr = packet.dst[0];
            v4.sport = packet.src_port.to_be();
            v4.dport = packet.dst_port.to_be();
            size_of::<aya_ebpf::bindings::bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>()
        }
    } else {
        // SAFETY: as above, the ipv6 member.
        unsafe {
            let v6 = &mut tuple.__bindgen_anon_1.ipv6;
            v6.saddr = packet.src;
            v6.daddr = packet.dst;
            v6.sport = packet.src_port.to_be();
            v6.dport = packet.dst_port.to_be();
            size_of::<aya_ebpf::bindings::bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>()
        }
    };
    // SAFETY: the tuple lives on this stack frame for the call; a non-null socket is released.
    unsafe {
        let sk = bpf_skc_lookup_tcp(
            ctx.skb.skb.cast(),
            &mut tuple,
            tuple_len as u32,
            BPF_F_CURRENT_NETNS as u64,
            0,
        );
        if sk.is_null() {
            return;
        }
        // A TIME_WAIT socket owns no live flow: the 4-tuple is being reused by a new connection
        // that went direct (e.g. after the daemon died with clsact filters left in place), and
        // its packets must go on to the destination, not into the old socket.
        if (*sk).state == TCP_TIME_WAIT {
            bpf_sk_release(sk.cast());
            return;
        }
        // Assigning saves the stack a second lookup; if it fails the mark alone still routes the
        // packet to the same socket.
        let _ = bpf_sk_assign(ctx.skb.skb.cast(), sk.cast(), 0);
        bpf_sk_release(sk.cast());
    }
    mark(ctx, settings);
    count(counter::STEERED);
}

fn mark(ctx: &TcContext, settings: &Settings) {
    // SAFETY: reading a field of the context the kernel handed us.
    let old = unsafe { (*ctx.skb.skb).mark };
    ctx.set_mark((old & !settings.mark_mask) | (settings.mark & settings.mark_mask));
}

fn count(index: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, written only by this CPU with preemption disabled.
        unsafe { *value += 1 };
    }
}

#[sk_lookup]
pub fn mirror_sk_lookup(ctx: SkLookupContext) -> u32 {
    try_sk_lookup(&ctx);
    SK_PASS
}

fn try_sk_lookup(ctx: &SkLookupContext) {
    let lookup = ctx.lookup;
    // Context fields are read one by one with volatile loads at fixed offsets: the verifier
    // rejects loads through a context pointer LLVM has offset and shared between branches.
    macro_rules! field {
        ($name:ident) => {
            // SAFETY: the kernel hands a valid bpf_sk_lookup for the program's lifetime.
            unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*lookup).$name)) }
        };
    }
    if field!(protocol) != u32::from(IPPROTO_TCP) {
        return;
    }
    let family = field!(family);
    let (slot, flow) = if family == FAMILY_V4 {
        let flow = FlowKey {
            remote_addr: [field!(remote_ip4), 0, 0, 0],
            local_addr: [field!(local_ip4), 0, 0, 0],
            remote_port: u16::from_be(field!(remote_port)),
            local_port: field!(local_port) as u16,
            family: FAMILY_V4,
        };
        (LISTENER_V4, flow)
    } else if family == FAMILY_V6 {
        let flow = FlowKey {
            remote_addr: field!(remote_ip6),
            local_addr: field!(local_ip6),
            remote_port: u16::from_be(field!(remote_port)),
            local_port: field!(local_port) as u16,
            family: FAMILY_V6,
        };
        (LISTENER_V6, flow)
    } else {
        return;
    };
    // SAFETY: the value is not read, only its presence.
    if unsafe { PENDING_SYNS.get(&flow) }.is_none() {
        return;
    }
    let _ = PENDING_SYNS.remove(&flow);
    match LISTENERS.redirect_sk_lookup(ctx, slot, 0) {
        Ok(()) => count(counter::ASSIGNED),
        Err(error) => {
            count(counter::ASSIGN_FAILED);
            // Rare (the listener went away between the SYN's selection and this lookup), so it
            // is worth a line in the daemon's log; the SYN is then handled as if never selected.
            aya_log_ebpf::warn!(
                ctx,
                "sk_lookup: could not hand a selected SYN to the listener (error {}); it goes to the stack",
                error
            );
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
