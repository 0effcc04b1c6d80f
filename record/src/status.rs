//! The words a record is made of, each an enum spelled once: run, stage and trial statuses,
//! stage names, and the kinds of file a run records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a string-like enum: serialised, displayed and parsed by its spellings.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident = $spelling:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $spelling)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in records, the store and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($spelling => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}`; expected one of {}",
                        $what,
                        [$($spelling),+].join(", ")
                    )),
                }
            }
        }
    };
}

words! {
    /// How a run is, or how it ended.
    RunStatus ("run status") {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        /// Its process died (killed, machine lost) without recording an end.
        Interrupted = "interrupted",
    }
}

words! {
    /// How a stage ended.
    StageStatus ("stage status") {
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

words! {
    /// A sweep trial's state.
    TrialStatus ("trial status") {
        /// Submitted; its run has not ended.
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
        /// Stopped early by the sweep's pruning rule.
        Pruned = "pruned",
    }
}

words! {
    /// The stages of a run, in the order they run.
    StageName ("stage") {
        Load = "load",
        Prepare = "prepare",
        Train = "train",
        Evaluate = "evaluate",
        Report = "report",
    }
}

impl From<RunStatus> for TrialStatus {
    /// A trial is as its run is.
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Running => TrialStatus::Running,
            RunStatus::Completed => TrialStatus::Completed,
            RunStatus::Failed => TrialStatus::Failed,
            RunStatus::Cancelled => TrialStatus::Cancelled,
            RunStatus::Interrupted => TrialStatus::Interrupted,
        }
    }
}

impl TrialStatus {
    /// Completed and pruned trials are done; a resumed sweep runs the others again.
    pub fn is_done(self) -> bool {
        matches!(self, TrialStatus::Completed | TrialStatus::Pruned)
    }
}

/// What a recorded file is. The host's own outputs have fixed kinds; a raw data file carries the
/// role its loader gave it (`train-images`, `table`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    /// `lineage.json`: the data's transforms.
    Lineage,
    /// `history.csv`: per-epoch metrics.
    History,
    /// A file the model's `save` wrote.
    Model,
    /// The best epoch's weights.
    Checkpoint,
    /// `metrics.json`.
    Metrics,
    /// `predictions.csv`.
    Predictions,
    /// A page or file a report generator wrote.
    Report,
    /// A raw data file the loader read, by its role.
    Source(String),
}

impl ArtifactKind {
    /// The spelling in records and the store.
    pub fn as_str(&self) -> &str {
        match self {
            ArtifactKind::Lineage => "lineage",
            ArtifactKind::History => "history",
            ArtifactKind::Model => "model",
            ArtifactKind::Checkpoint => "checkpoint",
            ArtifactKind::Metrics => "metrics",
            ArtifactKind::Predictions => "predictions",
            ArtifactKind::Report => "report",
            ArtifactKind::Source(role) => role,
        }
    }

    /// The kind a spelling names; any other word is a source file's role.
    pub fn parse(text: &str) -> Self {
        match text {
            "lineage" => ArtifactKind::Lineage,
            "history" => ArtifactKind::History,
            "model" => ArtifactKind::Model,
            "checkpoint" => ArtifactKind::Checkpoint,
            "metrics" => ArtifactKind::Metrics,
            "predictions" => ArtifactKind::Predictions,
            "report" => ArtifactKind::Report,
            role => ArtifactKind::Source(role.to_owned()),
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ArtifactKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ArtifactKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ArtifactKind::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_through_its_spelling() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(*status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for stage in StageName::ALL {
            assert_eq!(stage.as_str().parse::<StageName>(), Ok(*stage));
        }
        for status in TrialStatus::ALL {
            assert_eq!(status.as_str().parse::<TrialStatus>(), Ok(*status));
        }
        assert_eq!(
            "complete".parse::<RunStatus>(),
            Err("unknown run status `complete`; expected one of running, completed, failed, cancelled, interrupted"
                .into())
        );
        assert_eq!(serde_json::to_value(RunStatus::Interrupted).unwrap(), "interrupted");
        assert_eq!(serde_json::from_value::<StageName>("evaluate".into()).unwrap(), StageName::Evaluate);
        use ArtifactKind::*;
        let kinds = [
            ("lineage", Lineage),
            ("history", History),
            ("model", Model),
            ("checkpoint", Checkpoint),
            ("metrics", Metrics),
            ("predictions", Predictions),
            ("report", Report),
            ("train-images", Source("train-images".into())),
        ];
        for (spelling, kind) in kinds {
            assert_eq!(ArtifactKind::parse(spelling), kind);
            assert_eq!(kind.as_str(), spelling);
            assert_eq!(serde_json::to_value(&kind).unwrap(), spelling);
        }
    }
}
