//! What every repository reads the same way: a record type built from the
//! columns it selects, found by one column or listed newest first.

use sqlx::any::AnyRow;

use crate::Store;

/// A record kept in one table, one row each.
pub(crate) trait Record: Sized {
    /// The table it is read from (with an alias when `COLUMNS` uses one).
    const TABLE: &'static str;
    /// The columns selected, in the order [`Record::from_row`] reads them.
    const COLUMNS: &'static str;
    /// The record in a row of `COLUMNS`.
    fn from_row(r: &AnyRow) -> Self;
}

/// `SELECT` of `T`'s columns from its table, `WHERE` `filter`.
fn select<T: Record>(filter: &str) -> String {
    format!("SELECT {} FROM {} WHERE {filter}", T::COLUMNS, T::TABLE)
}

impl Store {
    /// The record whose `column` is `value`, if any.
    pub(crate) async fn find<T: Record>(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<T>, sqlx::Error> {
        let sql = select::<T>(&format!("{column} = $1"));
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(T::from_row))
    }

    /// The records whose `column` is `value`, newest (by `created_ms`)
    /// first, at most `limit`.
    pub(crate) async fn newest<T: Record>(
        &self,
        column: &str,
        value: &str,
        limit: i64,
    ) -> Result<Vec<T>, sqlx::Error> {
        let sql = select::<T>(&format!("{column} = $1 ORDER BY created_ms DESC LIMIT $2"));
        let rows = sqlx::query(&sql)
            .bind(value)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(T::from_row).collect())
    }
}
