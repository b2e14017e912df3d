//! The task graph: topological order and cycle detection, on plain indices.

/// A DAG over tasks `0..n`; `deps[i]` lists the tasks `i` depends on.
#[derive(Debug, Clone)]
pub struct Dag {
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Dag {
    /// Builds the graph, or returns one cycle as a list of task indices (first == last).
    pub fn new(deps: Vec<Vec<usize>>) -> Result<Dag, Vec<usize>> {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let dag = Dag { deps, dependents };
        match dag.find_cycle() {
            Some(cycle) => Err(cycle),
            None => Ok(dag),
        }
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// Kahn's algorithm; ties keep declaration order so `flows show` is stable.
    pub fn topological_order(&self) -> Vec<usize> {
        let n = self.len();
        let mut indegree: Vec<usize> = self.deps.iter().map(|d| d.len()).collect();
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &self.dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        order
    }

    /// Every task reachable downstream of `roots`, the roots included.
    pub fn downstream_closure(&self, roots: impl IntoIterator<Item = usize>) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = roots.into_iter().collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                stack.extend(self.dependents[i].iter().copied());
            }
        }
        seen
    }

    fn find_cycle(&self) -> Option<Vec<usize>> {
        // Iterative DFS with colours; on a back edge, unwind the path to name the cycle.
        let n = self.len();
        let mut colour = vec![0u8; n]; // 0 new, 1 on stack, 2 done
        for start in 0..n {
            if colour[start] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            colour[start] = 1;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some(&dep) = self.deps[node].get(*next) {
                    *next += 1;
                    match colour[dep] {
                        0 => {
                            colour[dep] = 1;
                            path.push((dep, 0));
                        }
                        1 => {
                            let from = path.iter().position(|&(p, _)| p == dep).unwrap_or(0);
                            // Edges point to dependencies; report in execution order.
                            let mut cycle: Vec<usize> =
                                path[from..].iter().map(|&(p, _)| p).collect();
                            cycle.reverse();
                            cycle.push(cycle[0]);
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                    path.pop();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_dependencies_first() {
        // 0 <- 1 <- 3, 0 <- 2 <- 3
        let dag = Dag::new(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(dag.topological_order(), vec![0, 1, 2, 3]);
        assert_eq!(dag.downstream_closure([1]), vec![false, true, false, true]);
    }

    #[test]
    fn names_a_cycle() {
        // 0 depends on 2, 2 on 1, 1 on 0.
        let err = Dag::new(vec![vec![2], vec![0], vec![1], vec![]]).unwrap_err();
        assert_eq!(err.first(), err.last());
        assert_eq!(err.len(), 4);
        let self_loop = Dag::new(vec![vec![0]]).unwrap_err();
        assert_eq!(self_loop, vec![0, 0]);
    }
}
