//! Suspending the warehouse after a run that loaded data (`TRACKLAYER_SUSPEND_AFTER_FLUSH`),
//! so the next minute of idle warehouse time is not billed.

use tokio::time::Instant;

use super::{Flush, FlushReport};
use crate::snowflake::Statement;

impl Flush {
    pub(super) async fn suspend(&self, report: &mut FlushReport, deadline: Instant) {
        if report.events_loaded + report.events_rejected == 0 {
            report.suspend_detail =
                Some("nothing was loaded, so the warehouse was left alone".into());
            return;
        }
        let Some(loader) = self.delivery.sql_api() else {
            report.suspend_detail = Some("rows were not loaded on a warehouse".into());
            return;
        };
        let warehouse = match loader.source().client().await {
            Ok(client) => client.session().warehouse.clone(),
            Err(e) => {
                report.suspend_detail = Some(format!("cannot read the secret: {e}"));
                return;
            }
        };
        let Some(warehouse) = warehouse else {
            report.suspend_detail = Some(
                "the secret names no warehouse; add `warehouse` to suspend it after a flush".into(),
            );
            return;
        };
        let sql = format!("ALTER WAREHOUSE {} SUSPEND", warehouse.quoted());
        report.statements += 1;
        match loader
            .run(
                Statement::new(sql).tag("tracklayer:flush:suspend"),
                deadline,
            )
            .await
        {
            Ok(_) => report.warehouse_suspended = true,
            Err(e) => {
                let why = match e.code() {
                    Some("003001") => format!(
                        "the role lacks OPERATE on warehouse {warehouse}: GRANT OPERATE ON WAREHOUSE {warehouse} TO ROLE <loader role> ({e})"
                    ),
                    Some("090064") => format!("warehouse {warehouse} was already suspended"),
                    _ => format!("suspending {warehouse} failed: {e}"),
                };
                tracing::warn!(detail = why, "warehouse not suspended");
                report.suspend_detail = Some(why);
            }
        }
    }
}
