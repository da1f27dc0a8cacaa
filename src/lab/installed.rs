//! The rules the lab installed, as the kernel's own tools print them (`iptables-save -t nat`,
//! `nft -a list table ip kube-proxy`, read in each probed namespace after the capture), and the
//! rule the lab's model says made each rewrite. The rule the analysis names must be that one,
//! printed as those tools print it.

use super::dataplane::{ProxyMode, CALICO_NAT_OUTGOING};
use super::kube_proxy::{self, Service};
use super::kube_proxy_nft;
use super::netns::{Lab, LabResult};
use super::scenario::Scenario;
use super::topology::{Host, Node};
use crate::analyze::model::{Translation, TranslationKind};
use realip_probe::wire::{Backend, Owner, RuleEntry};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Per probed machine (by node name), the NAT rules installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// By chain, the `-A` lines in order, as `iptables-save -t nat` prints them.
    iptables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// By rule handle, its chain and its line as `nft -a list table ip kube-proxy` prints it
    /// (without the handle comment).
    nft: BTreeMap<String, BTreeMap<u64, (String, String)>>,
    /// The Services the rules were built from (the scenario's manifest).
    services: Vec<Service>,
}

impl Installed {
    /// Reads what the kernel holds in every probed namespace of `scenario`.
    pub fn read(lab: &Lab, scenario: &Scenario) -> LabResult<Installed> {
        let mut installed = Installed {
            services: scenario.services()?,
            ..Installed::default()
        };
        for (host, node) in super::capture::probed(scenario) {
            let saved = lab.output_of(host, "iptables-save", &["-t", "nat"])?;
            installed
                .iptables
                .insert(node.to_string(), parse_save(&saved));
            if matches!(host, Host::Node(_)) && scenario.dataplane.proxy == ProxyMode::Nftables {
                let listed =
                    lab.output_of(host, "nft", &["-a", "list", "table", "ip", "kube-proxy"])?;
                installed.nft.insert(node.to_string(), parse_nft(&listed));
            }
        }
        Ok(installed)
    }

    /// Whether `rule` is one installed on `node`, printed as the tool prints it: the line at its
    /// chain and position (iptables), or of its handle (nftables). Says what differs when not.
    pub fn holds(&self, node: &str, rule: &RuleEntry) -> Result<(), String> {
        match rule.backend {
            Backend::IptablesNft | Backend::IptablesLegacy => {
                let listed = self
                    .iptables
                    .get(node)
                    .and_then(|chains| chains.get(&rule.chain))
                    .and_then(|lines| lines.get((rule.position as usize).checked_sub(1)?));
                match listed {
                    Some(line) if *line == rule.text => Ok(()),
                    Some(line) => Err(format!(
                        "iptables-save prints {} #{} as {line:?}, the analysis as {:?}",
                        rule.chain, rule.position, rule.text
                    )),
                    None => Err(format!(
                        "iptables-save on {node} has no rule {} #{}",
                        rule.chain, rule.position
                    )),
                }
            }
            Backend::Nftables => {
                let listed = rule
                    .handle
                    .and_then(|h| self.nft.get(node).and_then(|rules| rules.get(&h)));
                match listed {
                    Some((chain, line)) if *chain == rule.chain && *line == rule.text => Ok(()),
                    Some((chain, line)) => Err(format!(
                        "nft lists handle {} as {line:?} in {chain}, the analysis as {:?} in {}",
                        rule.handle.unwrap_or_default(),
                        rule.text,
                        rule.chain
                    )),
                    None => Err(format!(
                        "nft on {node} lists no rule of handle {:?} in table {}",
                        rule.handle, rule.table
                    )),
                }
            }
        }
    }
}

/// `iptables-save` output: chain → its `-A` lines in order.
pub fn parse_save(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("-A ")) {
        let chain = line.split_whitespace().nth(1).unwrap_or_default();
        out.entry(chain.to_string())
            .or_default()
            .push(line.to_string());
    }
    out
}

/// `nft -a list table` output: rule handle → its chain and line.
pub fn parse_nft(text: &str) -> BTreeMap<u64, (String, String)> {
    let mut out = BTreeMap::new();
    let mut chain: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().map(str::to_string);
            continue;
        }
        if t.starts_with("map ") || t.starts_with("set ") || t.starts_with("table ") {
            chain = None;
            continue;
        }
        let (Some(chain), Some((text, handle))) = (&chain, t.rsplit_once(" # handle ")) else {
            continue;
        };
        if let Ok(handle) = handle.trim().parse::<u64>() {
            out.insert(handle, (chain.clone(), text.to_string()));
        }
    }
    out
}

/// The rule the lab's model says made a rewrite: its owner and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub owner: Owner,
    pub chain: String,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {}",
            crate::analyze::render::attribution::owner_words(self.owner),
            self.chain
        )
    }
}

/// Which installed rule made the rewrite `t` on `node`: the load balancer's listener, the
/// endpoint chain of the endpoint it DNATs to, or the masquerade of the node's dataplane
/// (Calico's natOutgoing for its own pods' traffic where it runs, kube-proxy's otherwise).
pub fn expected(
    scenario: &Scenario,
    installed: &Installed,
    node: &str,
    t: &Translation,
) -> Option<Expected> {
    if node == "clb" {
        // The listeners' DNAT in PREROUTING, a full-NAT listener's SNAT in POSTROUTING.
        let chain = match t.kind {
            TranslationKind::Dnat => "PREROUTING",
            TranslationKind::Snat => "POSTROUTING",
        };
        return Some(Expected {
            owner: Owner::User,
            chain: chain.into(),
        });
    }
    let on = Node::ALL.into_iter().find(|n| n.name() == node)?;
    let mode = scenario.dataplane.proxy;
    match t.kind {
        TranslationKind::Dnat => {
            let (service, endpoint) = installed.services.iter().find_map(|s| {
                s.endpoints
                    .iter()
                    .find(|e| IpAddr::V4(e.ip) == t.to.ip() && s.target_port == t.to.port())
                    .map(|e| (s, e))
            })?;
            let chain = match mode {
                ProxyMode::Iptables => kube_proxy::endpoint_chain(service, endpoint),
                ProxyMode::Nftables => kube_proxy_nft::endpoint_chain(service, endpoint),
            };
            Some(Expected {
                owner: Owner::KubeProxy,
                chain,
            })
        }
        TranslationKind::Snat => {
            let from_own_pod = in_cidr(t.from.ip(), &on.pod_cidr());
            if scenario.dataplane.cni_masquerade == Some(on) && from_own_pod {
                return Some(Expected {
                    owner: Owner::Calico,
                    chain: CALICO_NAT_OUTGOING.into(),
                });
            }
            let chain = match mode {
                ProxyMode::Iptables => "KUBE-POSTROUTING",
                ProxyMode::Nftables => "masquerading",
            };
            Some(Expected {
                owner: Owner::KubeProxy,
                chain: chain.into(),
            })
        }
    }
}

/// Whether `ip` is inside `cidr` (IPv4 `a.b.c.d/n`).
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (Some((net, len)), IpAddr::V4(ip)) = (cidr.split_once('/'), ip) else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read_by_chain_and_handle() {
        let save = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING\n\
                    -A KUBE-POSTROUTING -j MASQUERADE --random-fully\nCOMMIT\n";
        let chains = parse_save(save);
        assert_eq!(
            chains["KUBE-POSTROUTING"],
            ["-A KUBE-POSTROUTING -j MASQUERADE --random-fully"]
        );
        let nft = "table ip kube-proxy { # handle 7\n\tmap service-ips { # handle 3\n\t\t\
                   elements = { 1.2.3.4 . tcp . 80 : goto x }\n\t}\n\
                   \tchain masquerading { # handle 12\n\t\tmasquerade fully-random # handle 34\n\t}\n}\n";
        let rules = parse_nft(nft);
        assert_eq!(
            rules[&34],
            (
                "masquerading".to_string(),
                "masquerade fully-random".to_string()
            )
        );
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn cidrs() {
        assert!(in_cidr("198.18.2.20".parse().unwrap(), "198.18.2.0/24"));
        assert!(!in_cidr("198.18.1.20".parse().unwrap(), "198.18.2.0/24"));
    }
}
