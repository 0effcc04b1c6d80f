//! `host ui`: serves the store's runs to a browser (see `crate::ui`).

use std::net::IpAddr;

use crate::storage::StoreOptions;
use crate::ui::UiOptions;

pub fn ui(store: &StoreOptions, bind: IpAddr, port: u16, token: Option<String>, no_auth: bool) -> anyhow::Result<()> {
    let settings = store.settings()?;
    if !store.exists()? {
        anyhow::bail!("{}: no provenance store here yet; `host run` creates it (or pass --db)", settings.locator);
    }
    crate::ui::serve(UiOptions { settings, bind, port, token, no_auth, workers: 4 })
}
