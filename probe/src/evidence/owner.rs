//! Who installed a rule, guessed from the names netfilter keeps: the chain, the nftables table,
//! the chain a built-in chain's rule jumps to, the rule's comment, an interface it matches.

use crate::wire::{Owner, OwnerBasis};

/// Owner by a chain's (or an nftables table's) name.
pub fn by_name(name: &str) -> Option<Owner> {
    let upper = name.to_ascii_uppercase();
    Some(if upper.starts_with("KUBE-") || name == "kube-proxy" {
        Owner::KubeProxy
    } else if name.starts_with("cali-") || name.starts_with("cali:") || name == "calico" {
        Owner::Calico
    } else if name.starts_with("CILIUM_") || name.starts_with("cilium") {
        Owner::Cilium
    } else if upper.starts_with("FLANNEL") {
        Owner::Flannel
    } else if upper.starts_with("IP-MASQ") {
        Owner::IpMasqAgent
    } else if upper.starts_with("AWS-SNAT-CHAIN") || upper.starts_with("AWS-CONNMARK-CHAIN") {
        Owner::AwsVpcCni
    } else if upper.starts_with("DOCKER") {
        Owner::Docker
    } else {
        return None;
    })
}

/// Owner by a rule's comment: the tags these components write.
fn by_comment(comment: &str) -> Option<Owner> {
    let lower = comment.to_ascii_lowercase();
    Some(if lower.starts_with("cali:") {
        Owner::Calico
    } else if lower.starts_with("cilium") {
        Owner::Cilium
    } else if lower.starts_with("flanneld") {
        Owner::Flannel
    } else if lower.starts_with("ip-masq-agent") {
        Owner::IpMasqAgent
    } else if lower.starts_with("aws") {
        Owner::AwsVpcCni
    } else if lower.starts_with("kubernetes ") {
        Owner::KubeProxy
    } else {
        return None;
    })
}

/// What is known of a rule when guessing its owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clues<'a> {
    pub table: &'a str,
    pub chain: &'a str,
    pub jump: Option<&'a str>,
    pub comment: Option<&'a str>,
    pub ifaces: &'a [String],
}

/// The owner and what the guess rests on, most specific name first: a chain named by its
/// owner (`KUBE-…`, `cali-…`) decides; a table named by its owner (`kube-proxy`) next; in a
/// built-in chain, the chain jumped to, then the comment, then a `docker0` interface.
pub fn guess(clues: &Clues<'_>) -> (Owner, OwnerBasis) {
    if let Some(owner) = by_name(clues.chain) {
        return (owner, OwnerBasis::Chain);
    }
    if let Some(owner) = by_name(clues.table) {
        return (owner, OwnerBasis::Table);
    }
    if let Some(owner) = clues.jump.and_then(by_name) {
        return (owner, OwnerBasis::Jump);
    }
    if let Some(owner) = clues.comment.and_then(by_comment) {
        return (owner, OwnerBasis::Comment);
    }
    if clues.ifaces.iter().any(|i| i == "docker0") {
        return (Owner::Docker, OwnerBasis::Iface);
    }
    (Owner::User, OwnerBasis::None)
}

/// A chain's owner: by its name, else its table's.
pub fn of_chain(table: &str, chain: &str) -> Owner {
    by_name(chain)
        .or_else(|| by_name(table))
        .unwrap_or(Owner::User)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(chain: &str, jump: Option<&str>, comment: Option<&str>) -> (Owner, OwnerBasis) {
        guess(&Clues {
            table: "nat",
            chain,
            jump,
            comment,
            ifaces: &[],
        })
    }

    #[test]
    fn chain_names_decide_first() {
        assert_eq!(owner("KUBE-POSTROUTING", None, None).0, Owner::KubeProxy);
        assert_eq!(owner("cali-nat-outgoing", None, None).0, Owner::Calico);
        assert_eq!(owner("CILIUM_POST_nat", None, None).0, Owner::Cilium);
        assert_eq!(owner("FLANNEL-POSTRTG", None, None).0, Owner::Flannel);
        assert_eq!(owner("IP-MASQ", None, None).0, Owner::IpMasqAgent);
        assert_eq!(owner("AWS-SNAT-CHAIN-0", None, None).0, Owner::AwsVpcCni);
        assert_eq!(owner("DOCKER", None, None).0, Owner::Docker);
        assert_eq!(
            owner("KUBE-SEP-X", Some("cali-x"), Some("cali:y")),
            (Owner::KubeProxy, OwnerBasis::Chain)
        );
    }

    #[test]
    fn built_in_chains_go_by_jump_then_comment_then_iface() {
        assert_eq!(
            owner("POSTROUTING", Some("KUBE-POSTROUTING"), None),
            (Owner::KubeProxy, OwnerBasis::Jump)
        );
        assert_eq!(
            owner("POSTROUTING", None, Some("cali:natOutgoing")),
            (Owner::Calico, OwnerBasis::Comment)
        );
        let docker = [String::from("docker0")];
        assert_eq!(
            guess(&Clues {
                table: "nat",
                chain: "POSTROUTING",
                ifaces: &docker,
                ..Clues::default()
            }),
            (Owner::Docker, OwnerBasis::Iface)
        );
        assert_eq!(
            owner("POSTROUTING", None, None),
            (Owner::User, OwnerBasis::None)
        );
    }

    #[test]
    fn nftables_tables_name_their_owner() {
        let clues = Clues {
            table: "kube-proxy",
            chain: "masquerading",
            ..Clues::default()
        };
        assert_eq!(guess(&clues), (Owner::KubeProxy, OwnerBasis::Table));
        assert_eq!(of_chain("calico", "nat-outgoing"), Owner::Calico);
    }
}
