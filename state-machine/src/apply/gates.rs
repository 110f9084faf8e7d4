//! What decides whether a job runs besides its needs: `if` conditions, decided once at
//! submission (a job whose condition is false is SKIPPED, and so is every job that needs
//! it), and manual gates (`ApproveJob` lets an AWAITING_APPROVAL job run).

use super::{EntryContext, Handled};
use crate::{
    CONDITION_FUEL_PER_PIPELINE, Condition, Event, Fuel, Gate, JobId, JobState, PipelineSpec, Rejection, Response,
    Role, SpecError, State,
};
use std::collections::BTreeMap;

/// Why each job of `spec` (in order) is skipped, or `None` for a job that runs. `source`
/// holds the variables of the pipeline's source (`Source::variables`), which take precedence
/// over a job's `env` of the same name.
pub(crate) fn skip_reasons(spec: &PipelineSpec, source: &[(String, String)]) -> Result<Vec<Option<String>>, SpecError> {
    let mut fuel = Fuel {
        left: CONDITION_FUEL_PER_PIPELINE,
    };
    let mut reasons: Vec<Option<String>> = Vec::with_capacity(spec.jobs.len());
    for job in &spec.jobs {
        let Some(text) = &job.condition else {
            reasons.push(None);
            continue;
        };
        let field = || format!("jobs[{}].if", job.name);
        let condition = Condition::parse(text).map_err(|reason| SpecError::Conflict { field: field(), reason })?;
        let lookup = |name: &str| {
            source
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .or_else(|| job.env.get(name))
        };
        let holds = condition.holds(&lookup, &mut fuel).map_err(|_| SpecError::Conflict {
            field: field(),
            reason: format!(
                "the pipeline's conditions take more than {CONDITION_FUEL_PER_PIPELINE} steps to decide; \
                 shorten the patterns or the values they match"
            ),
        })?;
        reasons.push((!holds).then(|| format!("if: {text} is false")));
    }
    // A job that needs a skipped job is skipped too: a walk from each skipped job along its
    // dependants, each job visited once (the first reason found is kept).
    let index: BTreeMap<&str, usize> = spec
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); spec.jobs.len()];
    for (i, job) in spec.jobs.iter().enumerate() {
        for need in &job.needs {
            if let Some(&n) = index.get(need.as_str()) {
                dependants[n].push(i);
            }
        }
    }
    let mut stack: Vec<usize> = (0..spec.jobs.len()).filter(|i| reasons[*i].is_some()).collect();
    while let Some(i) = stack.pop() {
        for &d in &dependants[i] {
            if reasons[d].is_none() {
                reasons[d] = Some(format!("needs {}, which was skipped", spec.jobs[i].name));
                stack.push(d);
            }
        }
    }
    Ok(reasons)
}

impl State {
    /// Approves a manual job waiting in AWAITING_APPROVAL, once every job it needs has let it
    /// run: it becomes PENDING. Approving an approved job again answers as the first approval
    /// did (a retried proposal must not fail), and changes nothing.
    pub(crate) fn approve_job(&mut self, cx: &mut EntryContext, job: JobId, by: &str, role: Role) -> Handled {
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let Some(needed) = j.spec.approver() else {
            return Err(Rejection::WrongState {
                job,
                state: j.state,
                action: "approval (it is not a manual job)".into(),
            });
        };
        if let Some(Gate::Approved { by, .. }) = j.gate.as_deref() {
            return Ok(Response::Approved { job, by: by.clone() });
        }
        if role < needed {
            return Err(Rejection::ApprovalRole { job, needed });
        }
        if j.state != JobState::AwaitingApproval {
            return Err(match j.state.is_terminal() {
                true => Rejection::AlreadyFinished { job, state: j.state },
                false => Rejection::WrongState {
                    job,
                    state: j.state,
                    action: "approval".into(),
                },
            });
        }
        if let Some(need) = j
            .needs
            .iter()
            .map(|n| &self.jobs[n])
            .find(|n| !super::lifecycle::satisfies_dependants(n))
        {
            return Err(Rejection::NotReady {
                job,
                why: format!("it needs {}, which is {}", need.spec.name, need.state),
            });
        }
        if by.is_empty() || by.len() > self.limits.max_name_bytes {
            return Err(SpecError::Conflict {
                field: "by".into(),
                reason: format!("must be 1 to {} bytes", self.limits.max_name_bytes),
            }
            .into());
        }
        self.set_job_state(cx, job, JobState::Pending, false);
        self.jobs.get_mut(&job).expect("job vanished").gate = Some(Box::new(Gate::Approved {
            by: by.to_string(),
            at_ms: cx.now_ms,
        }));
        cx.emit(Event::JobApproved {
            job,
            by: by.to_string(),
        });
        Ok(Response::Approved {
            job,
            by: by.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobSpec, Resources};

    fn job(name: &str, needs: &[&str], condition: Option<&str>) -> JobSpec {
        let mut j = JobSpec::simple(name, "true", Resources::new(100, 64, 0));
        j.needs = needs.iter().map(|n| n.to_string()).collect();
        j.condition = condition.map(str::to_string);
        j
    }

    #[test]
    fn a_false_condition_skips_its_job_and_what_needs_it() {
        let spec = PipelineSpec {
            name: "p".into(),
            jobs: vec![
                job("test", &[], None),
                job("package", &["deploy"], None),
                job("deploy", &["test"], Some(r#"$FLOTILLA_BRANCH == "main""#)),
                job("docs", &["test"], Some(r#"$FLOTILLA_BRANCH != "main""#)),
                job("announce", &["package", "docs"], None),
            ],
        };
        let branch = |b: &str| vec![("FLOTILLA_BRANCH".to_string(), b.to_string())];
        let on_main = skip_reasons(&spec, &branch("main")).unwrap();
        assert_eq!(on_main[0], None);
        assert_eq!(on_main[2], None);
        assert_eq!(
            on_main[3].as_deref(),
            Some(r#"if: $FLOTILLA_BRANCH != "main" is false"#)
        );
        assert_eq!(on_main[4].as_deref(), Some("needs docs, which was skipped"));
        let on_dev = skip_reasons(&spec, &branch("dev")).unwrap();
        assert_eq!(on_dev[1].as_deref(), Some("needs deploy, which was skipped"));
        assert!(on_dev[4].is_some() && on_dev[3].is_none());
    }

    #[test]
    fn the_source_wins_over_a_job_variable_of_the_same_name() {
        let mut j = job(
            "deploy",
            &[],
            Some(r#"$FLOTILLA_BRANCH == "main" && $TARGET == "prod""#),
        );
        j.env.insert("FLOTILLA_BRANCH".into(), "main".into());
        j.env.insert("TARGET".into(), "prod".into());
        let spec = PipelineSpec {
            name: "p".into(),
            jobs: vec![j],
        };
        let dev = vec![("FLOTILLA_BRANCH".to_string(), "dev".to_string())];
        assert!(skip_reasons(&spec, &dev).unwrap()[0].is_some());
        assert!(skip_reasons(&spec, &[]).unwrap()[0].is_none());
    }

    #[test]
    fn conditions_that_cost_too_much_refuse_the_pipeline() {
        let mut jobs = Vec::new();
        for i in 0..100 {
            let mut j = job(
                &format!("j{i}"),
                &[],
                Some(&format!(r#"$V =~ "{}b""#, "*a".repeat(400))),
            );
            j.env.insert("V".into(), "a".repeat(1000));
            jobs.push(j);
        }
        let spec = PipelineSpec { name: "p".into(), jobs };
        let e = skip_reasons(&spec, &[]).unwrap_err();
        assert!(e.field().ends_with(".if") && e.to_string().contains("steps"), "{e}");
    }
}
