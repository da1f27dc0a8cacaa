//! Whether a flow's SYN reached a pod, or a socket of a node itself, judged by its last capture
//! point and the interfaces and addresses the probes announced in `hello`.

use super::model::EndsAt;
use realip_probe::wire::{Direction, IfaceKind};

/// What is known of a flow's last sighting.
#[derive(Debug, Clone, Copy)]
pub struct LastHop {
    /// The interface's kind; `None` when no `hello` named it.
    pub kind: Option<IfaceKind>,
    pub dir: Direction,
    /// The destination is an address of that very interface.
    pub dst_on_iface: bool,
    /// The destination is an address of any interface of that node.
    pub dst_on_node: bool,
    /// Retransmissions of the SYN.
    pub retries: u32,
    /// Whether the way from this node to its pods could have been seen: some pod-facing
    /// interface of the node was captured, and its datapath does not bypass them.
    pub pod_side_seen: bool,
}

/// Where the SYN ended (see [`EndsAt`]), and whether it counts as having reached a pod
/// (`reached_pod`: true also when nothing tells, as for pcap input without `hello`).
///
/// A SYN that ends `in` on a node, addressed to one of the node's own addresses, went to a
/// local socket: an L7 proxy, an ingress controller or a backend on hostNetwork accepted it.
/// A SYN dropped on its way there looks the same on the wire but goes unanswered, so the
/// client sends it again: a retransmitted one is taken as dropped (a NodePort with
/// externalTrafficPolicy Local on a node without endpoints drops in netfilter, after capture).
///
/// A SYN that arrives (`in`) at a node whose way to its pods was not seen went on past every
/// capture point: [`EndsAt::Unseen`], taken as reached (the pod, if any, sees its last source
/// unless something unseen rewrites it) without a verdict resting on it.
pub fn ends_at(last: LastHop) -> (EndsAt, bool) {
    match pod_facing(last.kind, last.dir, last.dst_on_iface) {
        Some(true) => (EndsAt::Pod, true),
        Some(false) if last.dir == Direction::In && last.dst_on_node && last.retries == 0 => {
            (EndsAt::Host, false)
        }
        Some(false) if last.dir == Direction::In && !last.pod_side_seen => (EndsAt::Unseen, true),
        Some(false) => (EndsAt::Unknown, false),
        None => (EndsAt::Unknown, true),
    }
}

/// Whether a SYN last seen on an interface of `kind`, in direction `dir`, reached a pod.
/// `dst_on_iface`: the destination is an address of that very interface.
///
/// Pod-facing is an `out` on a veth, bridge or ENI (toward a pod), or an `in` on the pod's own
/// end of a veth or ENI (the destination is that interface's address). A SYN that ends `in` on a
/// node's uplink, on a tunnel, or coming from a pod was dropped or went on uncaptured. `None`
/// when nothing tells: no `hello` named the interface, or its kind is unclassified.
fn pod_facing(kind: Option<IfaceKind>, dir: Direction, dst_on_iface: bool) -> Option<bool> {
    match (kind?, dir) {
        (IfaceKind::Veth | IfaceKind::Bridge | IfaceKind::Eni, Direction::Out) => Some(true),
        (IfaceKind::Veth | IfaceKind::Eni, Direction::In) => Some(dst_on_iface),
        (IfaceKind::Bridge | IfaceKind::Uplink | IfaceKind::Tunnel | IfaceKind::Loopback, _) => {
            Some(false)
        }
        (IfaceKind::Other, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{In, Out};
    use IfaceKind::*;

    #[test]
    fn pod_facing_hops() {
        assert_eq!(pod_facing(Some(Veth), Out, false), Some(true));
        assert_eq!(pod_facing(Some(Bridge), Out, false), Some(true));
        assert_eq!(pod_facing(Some(Eni), Out, false), Some(true));
        assert_eq!(pod_facing(Some(Veth), In, true), Some(true));
    }

    #[test]
    fn hops_that_are_not_pod_facing() {
        // The dropped NodePort SYN: in on the uplink, addressed to the node itself.
        assert_eq!(pod_facing(Some(Uplink), In, true), Some(false));
        assert_eq!(pod_facing(Some(Uplink), Out, false), Some(false));
        assert_eq!(pod_facing(Some(Tunnel), Out, false), Some(false));
        // A pod's SYN that entered the node and went nowhere seen.
        assert_eq!(pod_facing(Some(Veth), In, false), Some(false));
        assert_eq!(pod_facing(Some(Bridge), In, false), Some(false));
    }

    fn last(kind: IfaceKind, dir: Direction, dst_on_node: bool, retries: u32) -> LastHop {
        LastHop {
            kind: Some(kind),
            dir,
            dst_on_iface: false,
            dst_on_node,
            retries,
            pod_side_seen: true,
        }
    }

    #[test]
    fn a_syn_to_the_nodes_own_address_ends_at_a_local_socket() {
        // The L7 load balancer accepted the client's SYN to its VIP (an address on its lo).
        assert_eq!(ends_at(last(Uplink, In, true, 0)), (EndsAt::Host, false));
        // A pod connecting to a hostNetwork process through the node or bridge address.
        assert_eq!(ends_at(last(Veth, In, true, 0)), (EndsAt::Host, false));
        assert_eq!(ends_at(last(Bridge, In, true, 0)), (EndsAt::Host, false));
        assert_eq!(ends_at(last(Loopback, In, true, 0)), (EndsAt::Host, false));
    }

    #[test]
    fn a_retransmitted_syn_to_the_node_was_dropped() {
        // externalTrafficPolicy Local, no endpoint on this node: unanswered, sent again.
        assert_eq!(ends_at(last(Uplink, In, true, 1)), (EndsAt::Unknown, false));
    }

    #[test]
    fn a_syn_not_addressed_to_the_node_did_not_end_there() {
        // Forwarded on where no probe watched, or dropped.
        assert_eq!(
            ends_at(last(Uplink, In, false, 0)),
            (EndsAt::Unknown, false)
        );
        assert_eq!(
            ends_at(last(Tunnel, In, false, 0)),
            (EndsAt::Unknown, false)
        );
        // Leaving by the uplink is not an arrival, whatever its destination.
        assert_eq!(
            ends_at(last(Uplink, Out, true, 0)),
            (EndsAt::Unknown, false)
        );
    }

    #[test]
    fn pod_facing_hops_end_at_a_pod() {
        assert_eq!(ends_at(last(Veth, Out, false, 0)), (EndsAt::Pod, true));
        // Retransmitted or not, a SYN seen toward the pod reached it.
        assert_eq!(ends_at(last(Bridge, Out, false, 2)), (EndsAt::Pod, true));
        let own_end = LastHop {
            dst_on_iface: true,
            ..last(Veth, In, true, 0)
        };
        assert_eq!(ends_at(own_end), (EndsAt::Pod, true));
    }

    #[test]
    fn an_arrival_where_the_pod_side_was_not_seen_goes_on_unseen() {
        let blind = |kind, dir, dst_on_node| LastHop {
            pod_side_seen: false,
            ..last(kind, dir, dst_on_node, 0)
        };
        // `tcpdump -i eth0` only: the NodePort SYN went on to a pod nobody watched.
        assert_eq!(ends_at(blind(Uplink, In, false)), (EndsAt::Unseen, true));
        assert_eq!(ends_at(blind(Tunnel, In, false)), (EndsAt::Unseen, true));
        // Leaving a node is no arrival; a local socket is still a local socket.
        assert_eq!(ends_at(blind(Uplink, Out, false)), (EndsAt::Unknown, false));
        assert_eq!(ends_at(blind(Uplink, In, true)), (EndsAt::Host, false));
        // Seen handed to a pod's interface: delivered, whatever else the node hides.
        assert_eq!(ends_at(blind(Veth, Out, false)), (EndsAt::Pod, true));
    }

    #[test]
    fn unknown_interfaces_tell_nothing() {
        let unnamed = LastHop {
            kind: None,
            ..last(Uplink, In, true, 0)
        };
        assert_eq!(ends_at(unnamed), (EndsAt::Unknown, true));
        assert_eq!(ends_at(last(Other, In, true, 0)), (EndsAt::Unknown, true));
        assert_eq!(pod_facing(None, In, false), None);
        assert_eq!(pod_facing(Some(Other), Out, false), None);
    }
}
