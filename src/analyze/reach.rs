//! Whether a flow's SYN reached a pod, judged by its last capture point and the interface kinds
//! the probes announced in `hello`.

use realip_probe::wire::{Direction, IfaceKind};

/// Whether a SYN last seen on an interface of `kind`, in direction `dir`, reached a pod.
/// `dst_on_iface`: the destination is an address of that very interface.
///
/// Pod-facing is an `out` on a veth, bridge or ENI (toward a pod), or an `in` on the pod's own
/// end of a veth or ENI (the destination is that interface's address). A SYN that ends `in` on a
/// node's uplink, on a tunnel, or coming from a pod was dropped or went on uncaptured. `None`
/// when nothing tells: no `hello` named the interface, or its kind is unclassified.
pub fn pod_facing(kind: Option<IfaceKind>, dir: Direction, dst_on_iface: bool) -> Option<bool> {
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

    #[test]
    fn unknown_interfaces_tell_nothing() {
        assert_eq!(pod_facing(None, In, false), None);
        assert_eq!(pod_facing(Some(Other), Out, false), None);
    }
}
