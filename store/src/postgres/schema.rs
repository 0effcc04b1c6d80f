//! The PostgreSQL schema as append-only migrations, in the same version numbers as SQLite's
//! (`store/src/sqlite/schema.rs`): version 4 is SQLite's 1 to 4 at once, then one for one. Text that is sorted or
//! compared by range (ids, digests, times) is `COLLATE "C"`, byte order as in SQLite, whatever
//! the database's locale. JSON is kept as text, as in SQLite.

use crate::migration::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 4,
        additive: false,
        sql: r#"
    CREATE TABLE experiments (
        id BIGSERIAL PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT COLLATE "C" PRIMARY KEY,
        experiment_id BIGINT NOT NULL REFERENCES experiments(id),
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'interrupted')),
        config_file TEXT NOT NULL,
        config_json TEXT NOT NULL,
        config_sha256 TEXT COLLATE "C" NOT NULL,
        seed BIGINT NOT NULL,
        threads BIGINT NOT NULL,
        host_version TEXT NOT NULL,
        git_commit TEXT,
        git_dirty BOOLEAN,
        output_dir TEXT NOT NULL,
        started_at TEXT COLLATE "C" NOT NULL,
        finished_at TEXT COLLATE "C",
        heartbeat_at TEXT COLLATE "C" NOT NULL,
        pid BIGINT NOT NULL,
        hostname TEXT NOT NULL,
        error TEXT,
        failed_stage TEXT,
        summary_json TEXT,
        replay_of TEXT COLLATE "C" REFERENCES runs(run_id) ON DELETE SET NULL,
        boot_id TEXT,
        pid_namespace TEXT
    );
    CREATE INDEX runs_by_experiment ON runs (experiment_id, started_at);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE INDEX runs_by_start ON runs (started_at, run_id);
    CREATE INDEX runs_by_config_file ON runs (config_file, started_at);
    CREATE TABLE environments (
        run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        cpu TEXT NOT NULL,
        cores BIGINT NOT NULL,
        threads BIGINT NOT NULL,
        rustc TEXT NOT NULL,
        libtorch TEXT,
        device TEXT
    );
    CREATE TABLE plugin_libraries (
        sha256 TEXT COLLATE "C" PRIMARY KEY,
        path TEXT NOT NULL,
        plugin_name TEXT NOT NULL,
        plugin_version TEXT NOT NULL,
        sdk_version TEXT NOT NULL,
        size BIGINT NOT NULL
    );
    CREATE TABLE run_plugins (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        class TEXT NOT NULL,
        library_sha256 TEXT COLLATE "C" NOT NULL REFERENCES plugin_libraries(sha256),
        PRIMARY KEY (run_id, kind)
    );
    CREATE INDEX run_plugins_by_library ON run_plugins (library_sha256);
    CREATE TABLE artifacts (
        sha256 TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT NOT NULL,
        size BIGINT
    );
    CREATE TABLE run_artifacts (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        sha256 TEXT COLLATE "C" NOT NULL REFERENCES artifacts(sha256),
        role TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        UNIQUE (run_id, role, path, sha256)
    );
    CREATE INDEX run_artifacts_by_sha256 ON run_artifacts (sha256);
    CREATE TABLE stages (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        seconds DOUBLE PRECISION NOT NULL,
        parameters_json TEXT,
        cache_hit BOOLEAN NOT NULL DEFAULT FALSE,
        cache_key TEXT COLLATE "C",
        reused_from TEXT COLLATE "C" REFERENCES runs(run_id) ON DELETE SET NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE INDEX stages_by_cache_key ON stages (cache_key) WHERE cache_key IS NOT NULL;
    CREATE TABLE lineage_edges (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        relation TEXT NOT NULL CHECK (relation IN ('used', 'wasGeneratedBy', 'wasDerivedFrom', 'wasAssociatedWith')),
        subject TEXT COLLATE "C" NOT NULL,
        object TEXT COLLATE "C" NOT NULL,
        activity TEXT,
        parameters_json TEXT
    );
    CREATE INDEX lineage_by_subject ON lineage_edges (subject);
    CREATE INDEX lineage_by_object ON lineage_edges (object);
    CREATE INDEX lineage_by_run ON lineage_edges (run_id);
    CREATE TABLE parameters (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE metrics (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL,
        step BIGINT,
        value DOUBLE PRECISION,
        value_json TEXT
    );
    CREATE INDEX metrics_by_run ON metrics (run_id, name, step);
    CREATE TABLE sweeps (
        sweep_id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        config_json TEXT NOT NULL,
        metric TEXT NOT NULL,
        maximize BOOLEAN NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE sweep_trials (
        sweep_id TEXT COLLATE "C" NOT NULL REFERENCES sweeps(sweep_id) ON DELETE CASCADE,
        trial BIGINT NOT NULL,
        parameters_json TEXT NOT NULL,
        run_id TEXT COLLATE "C" REFERENCES runs(run_id) ON DELETE SET NULL,
        status TEXT NOT NULL,
        metric DOUBLE PRECISION,
        PRIMARY KEY (sweep_id, trial)
    );
    "#,
    },
    // 5, as SQLite's: runs by trial, and the scheduler jobs of sweeps.
    Migration {
        version: 5,
        additive: true,
        sql: r#"
    ALTER TABLE runs ADD COLUMN sweep_id TEXT COLLATE "C";
    ALTER TABLE runs ADD COLUMN trial BIGINT;
    CREATE INDEX runs_by_trial ON runs (sweep_id, trial, started_at);
    CREATE TABLE sweep_jobs (
        sweep_id TEXT COLLATE "C" NOT NULL REFERENCES sweeps(sweep_id) ON DELETE CASCADE,
        trial BIGINT NOT NULL,
        scheduler TEXT NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        submitted_at TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (sweep_id, trial, job_id)
    );
    "#,
    },
    // 6, as SQLite's: the lease of the process driving a sweep.
    Migration {
        version: 6,
        additive: true,
        sql: r#"
    ALTER TABLE sweeps ADD COLUMN driver_json TEXT;
    ALTER TABLE sweeps ADD COLUMN driver_heartbeat TEXT COLLATE "C";
    "#,
    },
    // 7, as SQLite's: annotations and verifications.
    Migration {
        version: 7,
        additive: true,
        sql: r#"
    CREATE TABLE annotations (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'note')),
        name TEXT COLLATE "C",
        value TEXT,
        author TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX annotations_by_run ON annotations (run_id, kind, name, id);
    CREATE TABLE verifications (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        ok INTEGER NOT NULL,
        problems INTEGER NOT NULL,
        checked_at TEXT COLLATE "C" NOT NULL,
        hostname TEXT NOT NULL
    );
    CREATE INDEX verifications_by_run ON verifications (run_id, id);
    "#,
    },
    // 8, as SQLite's: metrics by name and value, tags by key and value.
    Migration {
        version: 8,
        additive: true,
        sql: r#"
    CREATE INDEX metrics_by_name_value ON metrics (name, value);
    CREATE INDEX annotations_by_value ON annotations (kind, name, value);
    "#,
    },
    // 9: the read views (`crate::READ_VIEWS`): a stable interface for readers outside the host.
    Migration { version: 9, additive: true, sql: crate::READ_VIEWS_SQL },
    // 10: non-finite metric values as NULL on both backends; `annotations_v1.seq`.
    Migration { version: 10, additive: true, sql: crate::MIGRATION_10_POSTGRES },
];
