//! Refinery migrations run over a sqlx SQLite connection (no rusqlite), through a small adapter.

use refinery_core::Migration;
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The migrations compiled into this binary, in version order.
pub fn runner() -> refinery_core::Runner {
    embedded::migrations::runner()
}

/// Adapter that lets refinery drive one sqlx SQLite connection.
///
/// Each `execute` call is one `BEGIN IMMEDIATE` transaction, so a migration and the history row
/// recording it commit together or not at all.
#[derive(Debug)]
pub struct SqlxMigrator<'c>(pub &'c mut SqliteConnection);

impl AsyncTransaction for SqlxMigrator<'_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let mut count = 0;
        for query in queries {
            // Migration text is compiled into the binary (or given by a test), never user input.
            sqlx::raw_sql(AssertSqlSafe(query)).execute(&mut *tx).await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for SqlxMigrator<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = sqlx::query(AssertSqlSafe(query)).fetch_all(&mut *self.0).await?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in rows {
            let version: i32 = row.try_get(0)?;
            let name: String = row.try_get(1)?;
            let applied_on: String = row.try_get(2)?;
            let checksum: String = row.try_get(3)?;
            let applied_on =
                OffsetDateTime::parse(&applied_on, &Rfc3339).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let checksum = checksum.parse::<u64>().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            applied.push(Migration::applied(version, name, applied_on, checksum));
        }
        Ok(applied)
    }
}

impl AsyncMigrate for SqlxMigrator<'_> {}
