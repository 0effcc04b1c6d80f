//! `host ui`: serves the store's runs to a browser (see `crate::ui`).

use std::net::IpAddr;

use crate::storage::StoreOptions;
use crate::ui::UiOptions;

pub fn ui(store: &StoreOptions, bind: IpAddr, port: u16, token: Option<String>, no_auth: bool) -> anyhow::Result<()> {
    let settings = store.settings()?;
    if !store.exists()? {
        anyhow::bail!("{}: no provenance store here yet; `host run` creates it (or pass --db)", settings.locator);
    }
    // Brought to this host's schema once (tags and verifications need it); a store this user
    // cannot write is served read-only, its annotations refused when added.
    if let Err(error) = crate::storage::open(&settings) {
        tracing::warn!("the store is served read-only: {error:#}");
    }
    crate::ui::serve(UiOptions { settings, bind, port, token, no_auth, workers: 4 })
}
