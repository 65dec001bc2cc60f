//! Policy routing that delivers marked packets locally, installed over rtnetlink.
//!
//! For both families (the `ip` equivalents, with the default priority, table and mark):
//! - `ip rule add pref 99 iif lo fwmark 0x1/0x1 lookup main` — a guard, so that the node's own
//!   marked packets (e.g. with `tcp_fwmark_accept=1`) are not looped back to `lo`;
//! - `ip rule add pref 100 fwmark 0x1/0x1 lookup 100`;
//! - `ip route add local 0.0.0.0/0 dev lo table 100` (and `local ::/0`).
//!
//! Whatever a killed earlier run left (rules with our priorities and mark, routes in our table)
//! is removed first, so start-up is idempotent.
//!
//! The first rule ever added in a namespace makes Linux split its merged `local` and `main` IPv4
//! tables; a connect in that instant can fail once with ENETUNREACH (README: Failure behaviour).

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    packet_route::{
        route::{RouteAttribute, RouteMessage, RouteScope, RouteType},
        rule::{RuleAction, RuleAttribute, RuleMessage},
    },
    Handle, IpVersion, RouteMessageBuilder,
};
use tracing::{debug, warn};

use crate::config;

const MAIN_TABLE: u32 = 254;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("no loopback interface in this network namespace")]
    NoLoopback,
}

/// The rules and routes this daemon installed.
pub struct PolicyRouting {
    handle: Handle,
    mark: u32,
    table: u32,
    priority: u32,
}

impl PolicyRouting {
    /// Removes leftovers of an earlier run, then installs the rules and routes.
    pub async fn install(config: &config::Interception) -> Result<Self, Error> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(connection);
        let routing = Self {
            handle,
            mark: config.fwmark,
            table: config.route_table,
            priority: config.rule_priority,
        };
        let stale = routing.clear().await?;
        if stale > 0 {
            warn!(
                entries = stale,
                "removed policy routing left by an earlier run"
            );
        }
        let lo = nix::net::if_::if_nametoindex("lo").map_err(|_| Error::NoLoopback)?;
        for version in [IpVersion::V4, IpVersion::V6] {
            routing.add_rules(version.clone()).await?;
            routing.add_local_route(version, lo).await?;
        }
        debug!(
            mark = routing.mark,
            table = routing.table,
            priority = routing.priority,
            "policy routing installed"
        );
        Ok(routing)
    }

    /// Removes the rules and routes; failures are logged (the daemon is exiting).
    pub async fn remove(&self) {
        if let Err(e) = self.clear().await {
            warn!(error = %e, "kernel: could not remove policy routing; remove rules with priorities {} and {} and table {} by hand", self.priority - 1, self.priority, self.table);
        }
    }

    async fn add_rules(&self, version: IpVersion) -> Result<(), Error> {
        let with_mask = |mut message: RuleMessage| {
            message.attributes.push(RuleAttribute::FwMask(self.mark));
            message
        };
        let guard = self
            .handle
            .rule()
            .add()
            .priority(self.priority - 1)
            .input_interface("lo")
            .fw_mark(self.mark)
            .table_id(MAIN_TABLE)
            .action(RuleAction::ToTable);
        let divert = self
            .handle
            .rule()
            .add()
            .priority(self.priority)
            .fw_mark(self.mark)
            .table_id(self.table)
            .action(RuleAction::ToTable);
        for (name, request) in [("guard", guard), ("fwmark", divert)] {
            let result = match version {
                IpVersion::V4 => {
                    let mut request = request.v4();
                    let message = std::mem::take(request.message_mut());
                    *request.message_mut() = with_mask(message);
                    request.execute().await
                }
                IpVersion::V6 => {
                    let mut request = request.v6();
                    let message = std::mem::take(request.message_mut());
                    *request.message_mut() = with_mask(message);
                    request.execute().await
                }
            };
            result.map_err(|source| Error::Netlink {
                what: format!("adding the {name} rule ({version:?})"),
                source,
            })?;
        }
        Ok(())
    }

    async fn add_local_route(&self, version: IpVersion, lo: u32) -> Result<(), Error> {
        let route = match version {
            IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .output_interface(lo)
                .table_id(self.table)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .build(),
            IpVersion::V6 => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                .output_interface(lo)
                .table_id(self.table)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .build(),
        };
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|source| Error::Netlink {
                what: format!(
                    "adding the local route in table {} ({version:?})",
                    self.table
                ),
                source,
            })
    }

    /// Deletes our rules and every route in our table; returns how many entries went.
    async fn clear(&self) -> Result<usize, Error> {
        let mut removed = 0;
        for version in [IpVersion::V4, IpVersion::V6] {
            let rules: Vec<RuleMessage> = self
                .handle
                .rule()
                .get(version.clone())
                .execute()
                .try_collect()
                .await
                .map_err(|source| Error::Netlink {
                    what: "listing rules".into(),
                    source,
                })?;
            for rule in rules.into_iter().filter(|r| self.is_ours(r)) {
                self.handle
                    .rule()
                    .del(rule)
                    .execute()
                    .await
                    .map_err(|source| Error::Netlink {
                        what: "deleting a rule".into(),
                        source,
                    })?;
                removed += 1;
            }
            let query = match version {
                IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
                IpVersion::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
            };
            let mut routes = self.handle.route().get(query).execute();
            let mut ours = Vec::new();
            while let Some(route) = routes.next().await {
                let route = route.map_err(|source| Error::Netlink {
                    what: "listing routes".into(),
                    source,
                })?;
                if route_table(&route) == self.table {
                    ours.push(route);
                }
            }
            for route in ours {
                self.handle
                    .route()
                    .del(route)
                    .execute()
                    .await
                    .map_err(|source| Error::Netlink {
                        what: format!("deleting a route in table {}", self.table),
                        source,
                    })?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn is_ours(&self, rule: &RuleMessage) -> bool {
        let mut priority = None;
        let mut mark = None;
        for attribute in &rule.attributes {
            match attribute {
                RuleAttribute::Priority(p) => priority = Some(*p),
                RuleAttribute::FwMark(m) => mark = Some(*m),
                _ => {}
            }
        }
        mark == Some(self.mark)
            && matches!(priority, Some(p) if p == self.priority || p == self.priority - 1)
    }
}

fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}
