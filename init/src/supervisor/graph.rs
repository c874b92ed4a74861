//! The dependency graph, checked at load: invalid definitions, duplicates, missing
//! dependencies and cycles are found here and named.
//!
//! A problem never stops the rest: a broken service (and every service that `requires` it,
//! transitively) is put in `maintenance` with the problem as its reason, and the others
//! start. An `after` naming an unknown service is only a warning: ordering against nothing
//! is no ordering. Cycles are looked for over `requires` and `after` together, since both
//! order the start.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use ramkey_image::service::{ServiceSpec, validate_services};

/// Something wrong in the service definitions, found at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProblem {
    /// The definition itself is invalid; the service is put in maintenance.
    Invalid {
        /// The service.
        service: String,
        /// The validation error.
        reason: String,
    },
    /// A second definition with the same name; it is ignored.
    Duplicate {
        /// The name.
        service: String,
    },
    /// `requires` names an undefined service; the service is put in maintenance.
    MissingRequires {
        /// The service.
        service: String,
        /// The undefined name.
        missing: String,
    },
    /// `after` names an undefined service; that ordering is ignored.
    MissingAfter {
        /// The service.
        service: String,
        /// The undefined name.
        missing: String,
    },
    /// A dependency cycle; every service on it is put in maintenance.
    Cycle {
        /// The services in order, the first repeated at the end.
        path: Vec<String>,
    },
    /// The service requires a broken one, so it is put in maintenance too.
    BrokenDependency {
        /// The service.
        service: String,
        /// The broken service it requires.
        dependency: String,
    },
}

impl LoadProblem {
    #[cfg(test)]
    /// True when the problem only loses an ordering and every service still starts.
    pub fn is_warning(&self) -> bool {
        matches!(self, LoadProblem::MissingAfter { .. } | LoadProblem::Duplicate { .. })
    }
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadProblem::Invalid { reason, .. } => write!(f, "{reason}"),
            LoadProblem::Duplicate { service } => {
                write!(
                    f,
                    "service `{service}` is defined twice; the second definition is ignored"
                )
            }
            LoadProblem::MissingRequires { service, missing } => {
                write!(f, "service `{service}` requires `{missing}`, which is not defined")
            }
            LoadProblem::MissingAfter { service, missing } => {
                write!(
                    f,
                    "service `{service}` is after `{missing}`, which is not defined (ignored)"
                )
            }
            LoadProblem::Cycle { path } => write!(f, "cycle: {}", path.join(" -> ")),
            LoadProblem::BrokenDependency { service, dependency } => {
                write!(
                    f,
                    "service `{service}` requires `{dependency}`, which is in maintenance"
                )
            }
        }
    }
}

/// The services with their dependencies resolved to indices.
#[derive(Debug)]
pub struct Graph {
    /// The definitions, in load order (duplicates dropped).
    pub specs: Vec<ServiceSpec>,
    /// `requires` of each service.
    pub requires: Vec<Vec<usize>>,
    /// `after` of each service (known names only).
    pub after: Vec<Vec<usize>>,
    /// Why a service can never start until its definition changes, if it cannot.
    pub broken: Vec<Option<String>>,
    index: BTreeMap<String, usize>,
}

impl Graph {
    /// Resolves and checks `specs`.
    pub fn load(specs: Vec<ServiceSpec>) -> (Graph, Vec<LoadProblem>) {
        let mut problems = Vec::new();
        let mut index = BTreeMap::new();
        let mut kept = Vec::new();
        for spec in specs {
            if index.contains_key(&spec.name) {
                problems.push(LoadProblem::Duplicate { service: spec.name });
                continue;
            }
            index.insert(spec.name.clone(), kept.len());
            kept.push(spec);
        }
        let n = kept.len();
        let mut broken: Vec<Option<String>> = vec![None; n];
        let (mut requires, mut after) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        for (i, spec) in kept.iter().enumerate() {
            if let Err(e) = validate_alone(spec) {
                broken[i] = Some(e.clone());
                problems.push(LoadProblem::Invalid {
                    service: spec.name.clone(),
                    reason: e,
                });
            }
            for dep in &spec.requires {
                match index.get(dep) {
                    Some(&d) => requires[i].push(d),
                    None => {
                        let p = LoadProblem::MissingRequires {
                            service: spec.name.clone(),
                            missing: dep.clone(),
                        };
                        broken[i].get_or_insert_with(|| p.to_string());
                        problems.push(p);
                    }
                }
            }
            for dep in &spec.after {
                match index.get(dep) {
                    Some(&d) => after[i].push(d),
                    None => problems.push(LoadProblem::MissingAfter {
                        service: spec.name.clone(),
                        missing: dep.clone(),
                    }),
                }
            }
        }
        let mut graph = Graph {
            specs: kept,
            requires,
            after,
            broken,
            index,
        };
        graph.find_cycles(&mut problems);
        graph.propagate(&mut problems);
        (graph, problems)
    }

    /// The index of a service by name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The number of services.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// The services `i` waits for: its `requires` then its `after`.
    pub fn deps(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.requires[i].iter().chain(&self.after[i]).copied()
    }

    /// True when `j` waits for `i` to start (so `j` must stop before `i` at shutdown).
    pub fn waits_for(&self, j: usize, i: usize) -> bool {
        self.deps(j).any(|d| d == i)
    }

    /// The services that `require` service `i`.
    pub fn required_by(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(move |&j| self.requires[j].contains(&i))
    }

    /// Puts every service on a cycle in maintenance, naming one cycle per strongly
    /// connected component.
    fn find_cycles(&mut self, problems: &mut Vec<LoadProblem>) {
        let n = self.len();
        let reach: Vec<Vec<bool>> = (0..n).map(|i| self.reachable(i)).collect();
        let mut done = vec![false; n];
        for i in 0..n {
            if done[i] || !reach[i][i] {
                continue;
            }
            let component: Vec<usize> = (0..n).filter(|&j| reach[i][j] && reach[j][i]).collect();
            let path = self.cycle_through(i, &component);
            let names: Vec<String> = path.iter().map(|&k| self.specs[k].name.clone()).collect();
            let problem = LoadProblem::Cycle { path: names };
            for &j in &component {
                done[j] = true;
                self.broken[j] = Some(problem.to_string());
            }
            problems.push(problem);
        }
    }

    /// Which services `start` leads to by following dependencies (itself only via a cycle).
    fn reachable(&self, start: usize) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut queue: VecDeque<usize> = self.deps(start).collect();
        while let Some(k) = queue.pop_front() {
            if !seen[k] {
                seen[k] = true;
                queue.extend(self.deps(k));
            }
        }
        seen
    }

    /// The shortest cycle from `start` back to itself inside `component`, start repeated.
    fn cycle_through(&self, start: usize, component: &[usize]) -> Vec<usize> {
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(k) = queue.pop_front() {
            for d in self.deps(k) {
                if d == start {
                    let mut path = vec![start];
                    let mut at = k;
                    while at != start {
                        path.push(at);
                        at = parent[&at];
                    }
                    path.push(start);
                    let last = path.len() - 1;
                    path[1..last].reverse();
                    return path;
                }
                if component.contains(&d) && !parent.contains_key(&d) {
                    parent.insert(d, k);
                    queue.push_back(d);
                }
            }
        }
        vec![start, start]
    }

    /// A service that requires a broken one is broken too, transitively.
    fn propagate(&mut self, problems: &mut Vec<LoadProblem>) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.len() {
                if self.broken[i].is_some() {
                    continue;
                }
                let Some(d) = self.requires[i].iter().copied().find(|&d| self.broken[d].is_some()) else {
                    continue;
                };
                let reason = self.broken[d].clone().unwrap_or_default();
                self.broken[i] = Some(format!("requires `{}`: {reason}", self.specs[d].name));
                problems.push(LoadProblem::BrokenDependency {
                    service: self.specs[i].name.clone(),
                    dependency: self.specs[d].name.clone(),
                });
                changed = true;
            }
        }
    }
}

/// Validates one definition on its own; its dependencies (a self-reference included, which
/// is reported as the cycle `a -> a`) are resolved here instead.
fn validate_alone(spec: &ServiceSpec) -> Result<(), String> {
    let mut alone = spec.clone();
    alone.requires.clear();
    alone.after.clear();
    validate_services(std::slice::from_ref(&alone)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, requires: &[&str], after: &[&str]) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, vec!["/bin/true".into()]);
        s.requires = requires.iter().map(|s| s.to_string()).collect();
        s.after = after.iter().map(|s| s.to_string()).collect();
        s
    }

    #[test]
    fn names_the_cycle_and_breaks_its_requirers() {
        let (g, problems) = Graph::load(vec![
            svc("ok", &[], &[]),
            svc("a", &["b"], &[]),
            svc("b", &[], &["c"]),
            svc("c", &["a"], &[]),
            svc("user", &["c"], &[]),
            svc("later", &[], &["a"]),
        ]);
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "cycle: a -> b -> c -> a",
                "service `user` requires `c`, which is in maintenance"
            ]
        );
        assert_eq!(g.broken[1].as_deref(), Some("cycle: a -> b -> c -> a"));
        assert_eq!(g.broken[4].as_deref(), Some("requires `c`: cycle: a -> b -> c -> a"));
        assert_eq!(g.broken[0], None);
        // Only ordered after a broken service: still starts.
        assert_eq!(g.broken[5], None);
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let (g, problems) = Graph::load(vec![svc("a", &["a"], &[])]);
        assert_eq!(problems[0].to_string(), "cycle: a -> a");
        assert!(g.broken[0].is_some());
    }

    #[test]
    fn missing_and_duplicate_and_invalid() {
        let mut bad = svc("bad", &[], &[]);
        bad.argv = vec!["relative".into()];
        let (g, problems) = Graph::load(vec![
            svc("a", &["ghost"], &["phantom"]),
            svc("a", &[], &[]),
            bad,
            svc("b", &[], &["phantom"]),
        ]);
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(texts.contains(&"service `a` requires `ghost`, which is not defined".to_string()));
        assert!(texts.contains(&"service `a` is defined twice; the second definition is ignored".to_string()));
        assert!(texts.iter().any(|t| t.contains("argv must be non-empty")), "{texts:?}");
        assert_eq!(g.len(), 3);
        assert!(g.broken[0].is_some() && g.broken[1].is_some());
        assert_eq!(g.broken[2], None, "an unknown `after` is only a warning");
        assert!(problems.iter().any(LoadProblem::is_warning));
    }
}
