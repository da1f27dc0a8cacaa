//! The path being followed through the rules: the source address each hop receives, what
//! rewrote it, the setting that decided it and the fix.

use super::super::model::{Fix, Hop, L4Source, L7Source, Origin, OriginVerdict, Owner, Reason};

/// A path being followed: where the packet is and what the pod will see.
#[derive(Debug, Clone)]
pub struct Trail {
    /// The source address the current hop receives.
    pub source: L4Source,
    /// Where the client address can still be read at layer 7.
    pub l7: L7Source,
    pub reasons: Vec<Reason>,
    pub fixes: Vec<Fix>,
    pub path: Vec<Hop>,
    /// A rewrite that has happened but shows at the next hop (a proxy's new connection).
    pending: Option<String>,
}

impl Trail {
    /// A path that starts at `at` with `source` as the sender.
    pub fn start(at: &str, source: L4Source) -> Trail {
        Trail {
            source,
            l7: L7Source::None,
            reasons: Vec::new(),
            fixes: Vec::new(),
            path: vec![Hop {
                at: at.to_string(),
                source,
                rewrite: None,
                by: None,
            }],
            pending: None,
        }
    }

    /// A proxy opens a new connection: from now on the source is `source`.
    pub fn new_connection(&mut self, source: L4Source, what: &str) {
        self.source = source;
        self.pending = Some(what.to_string());
    }

    /// The packet reaches `at` with its source unchanged.
    pub fn to(&mut self, at: &str) {
        self.path.push(Hop {
            at: at.to_string(),
            source: self.source,
            rewrite: self.pending.take(),
            by: None,
        });
    }

    /// The packet reaches `at` with its source rewritten to `source` by `what` (a proxy's new
    /// connection, a load balancer, a rewrite no node's rule makes).
    pub fn rewritten(&mut self, at: &str, source: L4Source, what: &str) {
        self.rewrite(at, source, what, None);
    }

    /// The packet reaches `at` with its source rewritten to `source` by a rule of `by`'s on a
    /// node (`what` says which).
    pub fn snat(&mut self, at: &str, source: L4Source, by: Owner, what: &str) {
        self.rewrite(at, source, what, Some(by));
    }

    fn rewrite(&mut self, at: &str, source: L4Source, what: &str, by: Option<Owner>) {
        self.source = source;
        let what = match self.pending.take() {
            Some(before) => format!("{before}; {what}"),
            None => what.to_string(),
        };
        self.path.push(Hop {
            at: at.to_string(),
            source,
            rewrite: Some(what),
            by,
        });
    }

    pub fn because(&mut self, setting: impl Into<String>, text: impl Into<String>) {
        self.reasons.push(Reason {
            setting: setting.into(),
            text: text.into(),
        });
    }

    pub fn fix(&mut self, text: impl Into<String>, apply: Option<String>) {
        let fix = Fix {
            text: text.into(),
            apply,
        };
        let same = |f: &Fix| f.text == fix.text || (fix.apply.is_some() && f.apply == fix.apply);
        if !self.fixes.iter().any(same) {
            self.fixes.push(fix);
        }
    }

    /// The path ends without an answer: the pod's view is unknown for the given reason.
    pub fn unknown(&mut self, setting: impl Into<String>, text: impl Into<String>) {
        self.source = L4Source::Unknown;
        if self.l7 == L7Source::None {
            self.l7 = L7Source::Unknown;
        }
        self.because(setting, text);
    }

    pub fn verdict(self, origin: Origin, via: &str) -> OriginVerdict {
        OriginVerdict {
            origin,
            via: via.to_string(),
            l4_source_seen_by_pod: self.source,
            l7_client_ip: self.l7,
            reasons: self.reasons,
            fixes: self.fixes,
            path: self.path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_rewrite_shows_at_the_next_hop() {
        let mut trail = Trail::start("client", L4Source::Client);
        trail.new_connection(L4Source::Proxy, "new connection");
        trail.to("pod");
        assert_eq!(trail.path[1].rewrite.as_deref(), Some("new connection"));
        assert_eq!(trail.path[1].source, L4Source::Proxy);
        trail.rewritten("x", L4Source::Node, "SNAT");
        assert_eq!(trail.path[2].rewrite.as_deref(), Some("SNAT"));
    }
}
