//! Following the node's interfaces: attach to every watched interface that exists or appears,
//! forget the ones that vanish.
//!
//! The netlink subscription is opened before the initial dump, so an interface created between
//! the two is seen by one of them (attaching twice is a no-op).

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    packet_core::NetlinkPayload,
    packet_route::{
        link::{LinkAttribute, LinkMessage},
        tc::{TcHandle, TcMessage},
        RouteNetlinkMessage,
    },
    MulticastGroup,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::attach::Attacher;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("listing interfaces: {0}")]
    Dump(rtnetlink::Error),
}

/// Attaches to the current interfaces, then follows link events until `stop` is cancelled.
pub async fn watch(attacher: Arc<Mutex<Attacher>>, stop: CancellationToken) -> Result<(), Error> {
    let (connection, _handle, mut events) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(Error::Socket)?;
    let events_task = tokio::spawn(connection);

    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let dump_task = tokio::spawn(connection);
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(Error::Dump)?;
    dump_task.abort();
    for link in &links {
        if let Some(name) = link_name(link) {
            super::lock(&attacher).attach(link.header.index, name);
        }
    }

    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = events.next() => {
                    let Some((message, _)) = event else {
                        warn!("kernel: netlink link events stopped; new interfaces will not be intercepted");
                        break;
                    };
                    match message.payload {
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                            if let Some(name) = link_name(&link) {
                                super::lock(&attacher).attach(link.header.index, name);
                            }
                        }
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                            super::lock(&attacher).vanished(link.header.index);
                        }
                        _ => {}
                    }
                }
            }
        }
        events_task.abort();
    });
    Ok(())
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// Deletes the clsact qdiscs this daemon added (only those: a CNI's stay).
pub async fn remove_clsact(interfaces: &[String]) {
    if interfaces.is_empty() {
        return;
    }
    let Ok((connection, handle, _)) = rtnetlink::new_connection() else {
        warn!("kernel: cannot open netlink to remove clsact qdiscs");
        return;
    };
    let task = tokio::spawn(connection);
    for name in interfaces {
        let Ok(index) = nix::net::if_::if_nametoindex(name.as_str()) else {
            continue; // gone, and its qdisc with it
        };
        let mut request = handle.clone().qdisc().del(index as i32);
        let message: &mut TcMessage = request.message_mut();
        message.header.parent = TcHandle::CLSACT;
        message.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        message
            .attributes
            .push(rtnetlink::packet_route::tc::TcAttribute::Kind(
                "clsact".into(),
            ));
        match request.execute().await {
            Ok(()) => debug!(interface = %name, "removed clsact qdisc"),
            Err(e) => warn!(interface = %name, error = %e, "kernel: could not remove clsact qdisc"),
        }
    }
    task.abort();
}
