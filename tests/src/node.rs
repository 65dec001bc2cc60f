//! A simulated Kubernetes node built from network namespaces, CNI style.
//!
//! ```text
//!   pod ns "pod-a"                NODE ns (stands in for the host)           primary ns
//!   eth0 10.244.1.2/24  <--veth-->  cali<hex> 10.244.1.1/24
//!        fd00:244:1::2/64           cali<hex> fd00:244:1::1/64
//!                                   up<hex>  10.96.0.1/24      <--veth-->  eth0 10.96.0.10/24
//!                                   up<hex>  fd00:96::1/64                      fd00:96::10/64
//! ```
//!
//! Pod `N` (1-based) gets 10.244.N.0/24 and fd00:244:N::/64, the node side holding `.1`/`::1` as
//! the pod's default gateway. The node forwards IPv4 and IPv6. A service namespace ("primary", or
//! "shadow": the remote cluster's ingress at 172.20.0.10 / fd00:172:20::10) hangs off a node-side link whose name matches none of the CNI globs. Everything is
//! created inside namespaces the node owns: the machine's own links, rules and routes are never
//! touched. Dropping the [`Node`] deletes every namespace and link it created.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, ensure, Result};

use crate::names::{self, Cni};
use crate::netns::{self, Netns, NetnsGuard};
use crate::tcp::{self, ConnectOptions};

/// The primary's addresses (a ClusterIP-like service address in the demo's default config).
pub const PRIMARY_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The primary's IPv6 address.
pub const PRIMARY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);
/// The shadow's address: a remote cluster's ingress, outside every range the daemon intercepts.
pub const SHADOW_V4: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 10);
/// The shadow's IPv6 address.
pub const SHADOW_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x172, 0x20, 0, 0, 0, 0, 0x10);

/// IP family, for tests that run once per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

/// A pod: its own namespace with `eth0`, wired to the node by a CNI-named veth.
#[derive(Clone, Debug)]
pub struct Pod {
    name: String,
    netns: Netns,
    host_interface: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

impl Pod {
    /// The name given at creation (`"a"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The node-side veth (`cali…`, `lxc…`, `veth…`).
    pub fn host_interface(&self) -> &str {
        &self.host_interface
    }

    /// The pod's IPv4 address.
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
    }

    /// The pod's IPv6 address.
    pub fn v6(&self) -> Ipv6Addr {
        self.v6
    }

    /// The pod's address of `family`.
    pub fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.v4),
            Family::V6 => IpAddr::V6(self.v6),
        }
    }

    /// The pod's address of the same family as `peer`.
    pub fn address_towards(&self, peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(_) => IpAddr::V4(self.v4),
            IpAddr::V6(_) => IpAddr::V6(self.v6),
        }
    }

    /// Connects from the pod to `destination` with the default options.
    pub fn connect(&self, destination: SocketAddr) -> Result<std::net::TcpStream> {
        self.connect_with(destination, &ConnectOptions::default())
    }

    /// Connects from the pod to `destination`.
    pub fn connect_with(
        &self,
        destination: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<std::net::TcpStream> {
        let source = options
            .source_port
            .map(|port| SocketAddr::new(self.address_towards(destination.ip()), port));
        self.netns
            .run(|| tcp::connect(source, destination, options))?
    }
}

/// A namespace outside the pods (the primary, later a shadow) reached through the node over a link
/// that is not a pod interface.
#[derive(Clone, Debug)]
pub struct Service {
    name: String,
    netns: Netns,
    host_interface: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

impl Service {
    /// The name given at creation (`"primary"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The node-side link (`up…`).
    pub fn host_interface(&self) -> &str {
        &self.host_interface
    }

    /// The service's IPv4 address.
    pub fn v4(&self) -> Ipv4Addr {
        self.v4
    }

    /// The service's IPv6 address.
    pub fn v6(&self) -> Ipv6Addr {
        self.v6
    }

    /// The service's address of `family` with `port`.
    pub fn addr(&self, family: Family, port: u16) -> SocketAddr {
        match family {
            Family::V4 => self.v4_addr(port),
            Family::V6 => self.v6_addr(port),
        }
    }

    /// The node's own address of `family` on this service's link (`.1` / `::1` of its subnet):
    /// the source of connections the node makes to the service, such as the daemon's relayed
    /// ones, where a direct connection from a pod comes from the pod's address.
    pub fn node_address(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => {
                let [a, b, c, _] = self.v4.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, 1))
            }
            Family::V6 => {
                let mut segments = self.v6.segments();
                segments[7] = 1;
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        }
    }

    /// `v4:port`.
    pub fn v4_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.v4), port)
    }

    /// `[v6]:port`.
    pub fn v6_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.v6), port)
    }
}

/// The simulated node. Fields drop in order: pod and service namespaces before the node's.
#[derive(Debug)]
pub struct Node {
    pods: Vec<Pod>,
    services: Vec<Service>,
    owned: Vec<NetnsGuard>,
    node: NetnsGuard,
    id: String,
}

/// Removes what earlier runs of the harness left when they were killed: their namespaces, with
/// the processes still in them, and their temporary directories. Every node starts with it.
pub fn remove_what_dead_runs_left() -> Result<()> {
    netns::remove_stale_namespaces()?;
    crate::scratch::remove_stale_dirs()
}

impl Node {
    /// Creates the NODE namespace: loopback up, IPv4 and IPv6 forwarding on.
    pub fn new() -> Result<Self> {
        remove_what_dead_runs_left()?;
        let id = names::node_id();
        let node = NetnsGuard::create(&names::namespace_name(&id, "node"))?;
        node.sysctl("net/ipv4/ip_forward", "1")?;
        node.sysctl("net/ipv6/conf/all/forwarding", "1")?;
        Ok(Node {
            pods: Vec::new(),
            services: Vec::new(),
            owned: Vec::new(),
            node,
            id,
        })
    }

    /// Builder form of [`Node::add_pod`] with Calico-style naming.
    pub fn with_pod(mut self, name: &str) -> Result<Self> {
        self.add_pod(name, Cni::Calico)?;
        Ok(self)
    }

    /// Builder form of [`Node::add_primary`].
    pub fn with_primary(mut self) -> Result<Self> {
        self.add_primary()?;
        Ok(self)
    }

    /// Builder form of [`Node::add_shadow`].
    pub fn with_shadow(mut self) -> Result<Self> {
        self.add_shadow()?;
        Ok(self)
    }

    /// The node's unique id (`mt<pid>-<seq>`), also the prefix of its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The NODE namespace (where the daemon runs).
    pub fn netns(&self) -> &Netns {
        self.node.handle()
    }

    /// A pod created earlier; panics with a clear message when there is none of that name.
    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|pod| pod.name == name)
            .unwrap_or_else(|| panic!("no pod named {name:?} on node {}", self.id))
    }

    /// A service created earlier; panics with a clear message when there is none of that name.
    pub fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|service| service.name == name)
            .unwrap_or_else(|| panic!("no service named {name:?} on node {}", self.id))
    }

    /// The primary (see [`Node::add_primary`]).
    pub fn primary(&self) -> &Service {
        self.service("primary")
    }

    /// The shadow (see [`Node::add_shadow`]).
    pub fn shadow(&self) -> &Service {
        self.service("shadow")
    }

    /// All pods, in creation order.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Adds pod number N (N = existing pods + 1) with addresses 10.244.N.2/24, fd00:244:N::2/64.
    pub fn add_pod(&mut self, name: &str, cni: Cni) -> Result<Pod> {
        ensure!(
            !self.pods.iter().any(|pod| pod.name == name),
            "pod {name:?} exists"
        );
        let subnet = self.pods.len() + 1;
        ensure!(subnet <= 250, "too many pods");
        let subnet = subnet as u8;
        let host_interface = cni.host_interface(names::next_sequence());
        let netns = self.attach_namespace(
            &format!("pod-{name}"),
            &host_interface,
            Ipv4Addr::new(10, 244, subnet, 2),
            Ipv6Addr::new(0xfd00, 0x244, u16::from(subnet), 0, 0, 0, 0, 2),
        )?;
        let pod = Pod {
            name: name.to_owned(),
            netns,
            host_interface,
            v4: Ipv4Addr::new(10, 244, subnet, 2),
            v6: Ipv6Addr::new(0xfd00, 0x244, u16::from(subnet), 0, 0, 0, 0, 2),
        };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// Adds the primary at 10.96.0.10/24 and fd00:96::10/64 (gateways .1 and ::1 on the node).
    pub fn add_primary(&mut self) -> Result<Service> {
        self.add_service("primary", PRIMARY_V4, PRIMARY_V6)
    }

    /// Adds the shadow, the "remote cluster ingress", at 172.20.0.10/24 and fd00:172:20::10/64:
    /// its own namespace, reached from the node only through a link named like no CNI's (`up…`),
    /// so the daemon's copies leave the node the way they would towards another cluster and are
    /// never intercepted themselves.
    pub fn add_shadow(&mut self) -> Result<Service> {
        self.add_service("shadow", SHADOW_V4, SHADOW_V6)
    }

    /// Adds a service namespace holding `v4`/24 and `v6`/64; the node side takes `.1` and `::1`
    /// of those subnets. The node-side link name matches no CNI glob.
    pub fn add_service(&mut self, name: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<Service> {
        ensure!(
            !self.services.iter().any(|service| service.name == name),
            "service {name:?} exists"
        );
        let host_interface = names::uplink_interface(names::next_sequence());
        let netns = self.attach_namespace(name, &host_interface, v4, v6)?;
        let service = Service {
            name: name.to_owned(),
            netns,
            host_interface,
            v4,
            v6,
        };
        self.services.push(service.clone());
        Ok(service)
    }

    /// Creates namespace `role`, a veth pair `host_interface` (in NODE) <-> `eth0` (in the new
    /// namespace), the addresses and the default routes.
    fn attach_namespace(
        &mut self,
        role: &str,
        host_interface: &str,
        v4: Ipv4Addr,
        v6: Ipv6Addr,
    ) -> Result<Netns> {
        let guard = NetnsGuard::create(&names::namespace_name(&self.id, role))?;
        let netns = guard.handle().clone();
        self.owned.push(guard);
        let node = self.node.handle();
        let [a, b, c, _] = v4.octets();
        let gateway_v4 = Ipv4Addr::new(a, b, c, 1);
        let mut segments = v6.segments();
        segments[7] = 1;
        let gateway_v6 = Ipv6Addr::from(segments);

        node.ip(&[
            "link",
            "add",
            host_interface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{gateway_v4}/24"),
            "dev",
            host_interface,
        ])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{gateway_v6}/64"),
            "dev",
            host_interface,
            "nodad",
        ])?;
        node.ip(&["link", "set", host_interface, "up"])?;

        netns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
        netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&["route", "add", "default", "via", &gateway_v4.to_string()])?;
        netns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &gateway_v6.to_string(),
        ])?;
        Ok(netns)
    }

    /// Names of the node's links (`ip -o link show` in NODE).
    pub fn links(&self) -> Result<Vec<NodeLink>> {
        parse_links(&self.netns().ip(&["-o", "link", "show"])?)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Deleting the node side removes both ends of each pair at once, instead of whenever the
        // namespaces' last reference goes.
        let interfaces = self
            .pods
            .iter()
            .map(|pod| pod.host_interface.clone())
            .chain(self.services.iter().map(|s| s.host_interface.clone()));
        for interface in interfaces {
            if let Err(error) = self.node.ip(&["link", "del", &interface]) {
                eprintln!("mirror-tests: {error:#}");
            }
        }
    }
}

/// A link of the node as `ip -o link show` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLink {
    pub index: u32,
    pub name: String,
}

/// Parses `ip -o link show` lines such as `5: cali0123@if2: <BROADCAST,...> mtu 1500 ...`.
pub fn parse_links(text: &str) -> Result<Vec<NodeLink>> {
    let mut links = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.splitn(3, ": ");
        let (Some(index), Some(name)) = (fields.next(), fields.next()) else {
            bail!("unexpected `ip -o link` line: {line}");
        };
        let name = name.split('@').next().unwrap_or(name);
        links.push(NodeLink {
            index: index.trim().parse()?,
            name: name.to_owned(),
        });
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_parsed_without_peer_suffix() -> Result<()> {
        let text = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n\
                    5: cali0a1b2c3d4e5@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n";
        let links = parse_links(text)?;
        assert_eq!(
            links,
            vec![
                NodeLink {
                    index: 1,
                    name: "lo".into()
                },
                NodeLink {
                    index: 5,
                    name: "cali0a1b2c3d4e5".into()
                },
            ]
        );
        Ok(())
    }
}
