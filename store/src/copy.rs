//! Copying runs and sweeps from one store to another (`host store copy`): a laptop's or an
//! offline node's SQLite store into the team's PostgreSQL, or back. Through the interface
//! alone, so any two backends copy. Runs go oldest first, a batch per transaction, each with
//! everything its record holds (stages, lineage, parameters, metrics, files), then its tags,
//! notes and verifications; sweeps after them, so trials find their runs. Idempotent: a run already there is left alone (or brought
//! up to date when it was still running there and has ended here).

use record::{RunRecord, RunStatus};

use crate::{Result, RunFilter, Store};

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    /// Runs new to the target.
    pub runs: usize,
    /// Runs the target had as running that have ended in the source.
    pub updated: usize,
    /// Runs the target had already.
    pub skipped: usize,
    /// Sweeps new to the target (the trials of the others are merged).
    pub sweeps: usize,
    /// Tags, notes and verifications new to the target.
    pub annotations: usize,
}

/// Runs per transaction.
const BATCH: usize = 100;

/// Copies every run and sweep of `from` into `to`; `progress(done, total)` after each batch.
pub fn copy(from: &dyn Store, to: &dyn Store, progress: &mut dyn FnMut(usize, usize)) -> Result<Copied> {
    let mut rows = from.list_runs(&RunFilter { limit: usize::MAX, ..RunFilter::default() })?;
    rows.reverse();
    let total = rows.len();
    let mut copied = Copied::default();
    let mut batch = Vec::with_capacity(BATCH);
    // A run that died before recording its training stage has no history in its record, only
    // the epochs it wrote as they happened: those are copied after it.
    let mut live = Vec::new();
    let mut live_epochs = |record: &RunRecord| -> Result<()> {
        if record.history.is_empty() {
            let epochs = from.step_metrics(&record.run_id, 0)?;
            if !epochs.is_empty() {
                let epochs: Vec<(String, u64, f64)> =
                    epochs.into_iter().map(|(step, name, value)| (name, step as u64, value)).collect();
                live.push((record.run_id.clone(), epochs));
            }
        }
        Ok(())
    };
    for (index, row) in rows.iter().enumerate() {
        if to.run_exists(&row.run_id)? {
            if to.run_status(&row.run_id)? == RunStatus::Running && row.status != RunStatus::Running {
                let record = from.run_record(&row.run_id)?;
                to.record(&record)?;
                live_epochs(&record)?;
                copied.updated += 1;
            } else {
                copied.skipped += 1;
            }
        } else {
            let record = from.run_record(&row.run_id)?;
            live_epochs(&record)?;
            batch.push(record);
        }
        if batch.len() == BATCH || index + 1 == total {
            to.import_runs(&batch)?;
            copied.runs += batch.len();
            batch.clear();
            progress(index + 1, total);
        }
    }
    for (run_id, epochs) in &live {
        to.live_metrics(run_id, epochs)?;
    }
    // Annotations and verifications the target lacks are appended (whole runs' or ones added
    // since an earlier copy); ones it has are not appended twice.
    for row in &rows {
        let annotations = from.annotations(&row.run_id)?;
        if !annotations.is_empty() {
            let there = to.annotations(&row.run_id)?;
            for annotation in annotations.iter().filter(|a| !there.contains(a)) {
                to.annotate(&row.run_id, annotation)?;
                copied.annotations += 1;
            }
        }
        let verifications = from.verifications(&row.run_id)?;
        if !verifications.is_empty() {
            let there = to.verifications(&row.run_id)?;
            for verification in verifications.iter().filter(|v| !there.contains(v)) {
                to.record_verification(&row.run_id, verification)?;
                copied.annotations += 1;
            }
        }
    }
    let known = to.sweep_ids()?;
    for sweep_id in from.sweep_ids()? {
        to.import_sweep(&from.sweep(&sweep_id)?)?;
        copied.sweeps += usize::from(!known.contains(&sweep_id));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conformance::{completed, started};
    use crate::testing::Cluster;
    use crate::{Locator, OpenOptions, SweepStart};

    fn sqlite(dir: &std::path::Path, name: &str) -> Box<dyn Store> {
        crate::open(&Locator::Sqlite(dir.join(name)), &OpenOptions::default()).unwrap()
    }

    /// A laptop's SQLite store into the team's PostgreSQL and back: every run whole, the sweep
    /// with its trials, and copying twice adds nothing.
    #[test]
    fn runs_and_sweeps_copy_between_backends_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let laptop = sqlite(dir.path(), "laptop.db");
        laptop
            .begin_sweep(&SweepStart {
                sweep_id: "s".into(),
                name: "s".into(),
                config: json!({"sweep": {"method": "grid"}}),
                metric: "test.accuracy".into(),
                maximize: true,
            })
            .unwrap();
        laptop.trial_started("s", 0, &json!({"lr": 0.1})).unwrap();
        for index in 0..3 {
            let mut record = started(&format!("r{index}"), "e", &format!("2026-01-01T00:00:0{index}Z"));
            if index == 0 {
                record.trial = Some(record::TrialRef { sweep_id: "s".into(), trial: 0 });
            }
            if index == 2 {
                record.replay_of = Some("r0".into());
            }
            laptop.begin_run(&record).unwrap();
            laptop.record(&completed(record, f64::from(index) / 4.0)).unwrap();
        }
        laptop.trial_ended("s", 0, record::TrialStatus::Completed, Some(0.0)).unwrap();
        // A run that died in training: its epochs only as written live, none in its record.
        laptop.begin_run(&started("r3", "e", "2026-01-01T00:00:03Z")).unwrap();
        laptop.live_metrics("r3", &[("loss".into(), 1, 0.5), ("loss".into(), 2, 0.25)]).unwrap();
        laptop.settle_run("r3", RunStatus::Interrupted, "killed", &[RunStatus::Running]).unwrap();
        let tag = crate::Annotation {
            kind: crate::AnnotationKind::Tag,
            name: Some("owner".into()),
            value: Some("ana".into()),
            author: "ana@laptop".into(),
            created_at: "2026-01-02T00:00:00Z".into(),
        };
        laptop.annotate("r1", &tag).unwrap();
        let verified = crate::Verification {
            ok: true,
            problems: 0,
            checked_at: "2026-01-02T00:00:01Z".into(),
            hostname: "laptop".into(),
        };
        laptop.record_verification("r1", &verified).unwrap();
        let team = crate::open(
            &Locator::parse(&Cluster::shared().create_database().unwrap()).unwrap(),
            &OpenOptions::default(),
        )
        .unwrap();
        let mut seen = Vec::new();
        let copied = copy(&*laptop, &*team, &mut |done, total| seen.push((done, total))).unwrap();
        assert_eq!(copied, Copied { runs: 4, updated: 0, skipped: 0, sweeps: 1, annotations: 2 });
        assert_eq!(team.annotations("r1").unwrap(), [tag]);
        assert_eq!(team.verifications("r1").unwrap(), [verified]);
        assert_eq!(seen.last(), Some(&(4, 4)));
        assert_eq!(team.step_metrics("r3", 0).unwrap().len(), 2, "a dead run's live epochs are copied");
        for index in 0..4 {
            let run_id = format!("r{index}");
            assert_eq!(team.run_record(&run_id).unwrap(), laptop.run_record(&run_id).unwrap());
            assert_eq!(team.lineage_edges(&run_id).unwrap(), laptop.lineage_edges(&run_id).unwrap());
            assert_eq!(team.parameters(&run_id).unwrap(), laptop.parameters(&run_id).unwrap());
            assert_eq!(team.final_metrics(&run_id).unwrap(), laptop.final_metrics(&run_id).unwrap());
            assert_eq!(team.step_metrics(&run_id, 0).unwrap(), laptop.step_metrics(&run_id, 0).unwrap());
        }
        let sweep = team.sweep("s").unwrap();
        assert_eq!((sweep.trials[0].run_id.as_deref(), sweep.trials[0].metric), (Some("r0"), Some(0.0)));
        assert_eq!(sweep.config, json!({"sweep": {"method": "grid"}}));
        let again = copy(&*laptop, &*team, &mut |_, _| {}).unwrap();
        assert_eq!(again, Copied { runs: 0, updated: 0, skipped: 4, sweeps: 0, annotations: 0 });
        assert_eq!(team.annotations("r1").unwrap().len(), 1, "not appended twice");
        assert_eq!(team.summary().unwrap().runs_by_status.get("completed"), Some(&3));
        // And back into an empty SQLite store.
        let back = sqlite(dir.path(), "back.db");
        assert_eq!(copy(&*team, &*back, &mut |_, _| {}).unwrap().runs, 4);
        assert_eq!(back.step_metrics("r3", 0).unwrap(), laptop.step_metrics("r3", 0).unwrap());
        assert_eq!(back.run_record("r2").unwrap(), laptop.run_record("r2").unwrap());
    }

    /// Two machines ran one sweep file (one sweep id): copying one's store into the other's
    /// merges the trials, and never replaces a completed trial with a failed or unfinished one.
    #[test]
    fn copying_a_sweep_merges_its_trials_and_never_undoes_a_result() {
        let dir = tempfile::tempdir().unwrap();
        let (laptop, team) = (sqlite(dir.path(), "laptop.db"), sqlite(dir.path(), "team.db"));
        for store in [&laptop, &team] {
            let start = SweepStart {
                sweep_id: "s".into(),
                name: "s".into(),
                config: json!({}),
                metric: "test.accuracy".into(),
                maximize: true,
            };
            store.begin_sweep(&start).unwrap();
        }
        // The team completed trial 1; the laptop's trial 1 failed, and it completed trial 2.
        let mut done = started("team-1", "e", "2026-01-01T00:00:00Z");
        done.trial = Some(record::TrialRef { sweep_id: "s".into(), trial: 1 });
        team.trial_started("s", 1, &json!({"lr": 1})).unwrap();
        team.begin_run(&done).unwrap();
        team.record(&completed(done, 0.9)).unwrap();
        laptop.trial_started("s", 1, &json!({"lr": 1})).unwrap();
        laptop.trial_ended("s", 1, record::TrialStatus::Failed, None).unwrap();
        let mut other = started("laptop-2", "e", "2026-01-01T00:00:01Z");
        other.trial = Some(record::TrialRef { sweep_id: "s".into(), trial: 2 });
        laptop.trial_started("s", 2, &json!({"lr": 2})).unwrap();
        laptop.begin_run(&other).unwrap();
        laptop.record(&completed(other, 0.5)).unwrap();
        let copied = copy(&*laptop, &*team, &mut |_, _| {}).unwrap();
        assert_eq!((copied.runs, copied.sweeps), (1, 0), "a sweep the team had is merged, not new");
        let merged = team.sweep("s").unwrap();
        let trials: Vec<(usize, record::TrialStatus, Option<&str>)> =
            merged.trials.iter().map(|t| (t.trial, t.status, t.run_id.as_deref())).collect();
        assert_eq!(
            trials,
            [
                (1, record::TrialStatus::Completed, Some("team-1")),
                (2, record::TrialStatus::Completed, Some("laptop-2"))
            ]
        );
    }

    #[test]
    fn a_run_still_running_in_the_target_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (sqlite(dir.path(), "a.db"), sqlite(dir.path(), "b.db"));
        let record = started("r", "e", "2026-01-01T00:00:00Z");
        source.begin_run(&record).unwrap();
        copy(&*source, &*target, &mut |_, _| {}).unwrap();
        assert_eq!(target.run_status("r").unwrap(), RunStatus::Running);
        source.record(&completed(record, 0.5)).unwrap();
        assert_eq!(copy(&*source, &*target, &mut |_, _| {}).unwrap().updated, 1);
        assert_eq!(target.run_status("r").unwrap(), RunStatus::Completed);
    }
}
