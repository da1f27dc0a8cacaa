//! Each scenario's cause and fix, in explain's words: the scenario's manifests go through the
//! same rules as `kubectl realip explain -f`, and only the ways in the scenario exercises are
//! kept. Scenarios explain has nothing to say about fall back to their own line.

use super::scenario::Scenario;
use crate::explain::{self, model::Explanation};

/// explain's verdicts for the ways in `scenario` exercises (empty when none applies).
pub fn explanations(scenario: &Scenario) -> Vec<Explanation> {
    let wanted: Vec<_> = scenario
        .connections
        .iter()
        .filter_map(|conn| conn.explained_by)
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(all) = explain::explain_manifests(scenario.manifest) else {
        return Vec::new();
    };
    all.into_iter()
        .filter_map(|mut explanation| {
            explanation
                .origins
                .retain(|v| wanted.contains(&(v.origin, v.via.as_str())));
            // What the manifests leave unsaid is the lab's topology: not worth a line here.
            explanation.assumptions.clear();
            explanation.closed.clear();
            (!explanation.origins.is_empty()).then_some(explanation)
        })
        .collect()
}

/// The text under a scenario's report.
pub fn cause_text(scenario: &Scenario) -> String {
    let explained = explanations(scenario);
    if explained.is_empty() {
        return format!(
            "cause: {}\nfix:   {}\n",
            squash(scenario.cause),
            squash(scenario.fix)
        );
    }
    let mut text = format!(
        "why (kubectl realip explain on this scenario's manifests):\n{}",
        explain::render_text(&explained)
    );
    // explain proposes fixes only for what is broken; the lab always ends with one.
    if explained
        .iter()
        .flat_map(|e| &e.origins)
        .all(|v| v.fixes.is_empty())
    {
        text.push_str(&format!("\n  fix:  {}\n", squash(scenario.fix)));
    }
    text
}

/// Joins the continuation lines of the scenario table's long strings.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::model::{L4Source, L7Source};
    use crate::lab::scenario::{self, Expect, Who};
    use crate::lab::topology::Pod;

    /// Whether explain's prediction fits what the lab expects. explain does not know which node
    /// the pod runs on, so `node` covers the bridge too.
    fn fits(predicted: L4Source, who: Who) -> bool {
        match who {
            Who::Client => predicted == L4Source::Client,
            Who::NodeIp(_) => predicted == L4Source::Node,
            Who::Bridge(_) => matches!(predicted, L4Source::Bridge | L4Source::Node),
            Who::Pod(Pod::Ingress) => predicted == L4Source::Proxy,
            Who::Pod(_) => predicted == L4Source::Pod,
        }
    }

    #[test]
    fn explain_predicts_what_the_lab_expects() {
        for scenario in scenario::all() {
            let explained = explanations(&scenario);
            for conn in &scenario.connections {
                let Some((origin, via)) = conn.explained_by else {
                    continue;
                };
                let verdict = explained
                    .iter()
                    .flat_map(|e| &e.origins)
                    .find(|v| v.origin == origin && v.via == via)
                    .unwrap_or_else(|| {
                        panic!("{}: explain has no {origin:?} via {via}", scenario.name)
                    });
                let Expect::Answered { by, l4, xff } = conn.expect else {
                    continue;
                };
                // Behind an ingress controller pod, explain speaks of the controller's Service:
                // what the controller accepts is what it writes into X-Forwarded-For.
                let (l4, xff) = match (l4, xff) {
                    (Who::Pod(Pod::Ingress), Some(seen)) => (seen, None),
                    other => other,
                };
                assert!(
                    fits(verdict.l4_source_seen_by_pod, l4),
                    "{}: explain says {:?}, the lab expects pod {by} to see {l4}",
                    scenario.name,
                    verdict.l4_source_seen_by_pod
                );
                let l7 = if xff.is_some() {
                    L7Source::XForwardedFor
                } else {
                    L7Source::None
                };
                assert_eq!(verdict.l7_client_ip, l7, "{}", scenario.name);
            }
        }
    }

    #[test]
    fn every_scenario_has_a_cause() {
        for scenario in scenario::all() {
            let text = crate::output::plain(&cause_text(&scenario));
            assert!(text.contains("fix"), "{}: {text}", scenario.name);
        }
    }
}
