//! The sink's failure policy: one function says what a PostgreSQL error
//! means, one decides what the sink does about a failed batch. Nothing else in the sink
//! inspects SQLSTATEs.
//!
//! A batch PostgreSQL refuses for a *data* reason holds at least one record whose rows
//! can never be written: retrying it fails the same way forever. The sink then isolates
//! the offending record(s) by bisection inside the batch's transaction and dead-letters
//! them ([`crate::service::LedgerDatabase::stage_batch`]). Any other failure is about
//! the environment (retried with backoff, the batch unchanged) or about the sink itself
//! (it stops, so that nothing is dead-lettered to hide a bug).
//!
//! SQLSTATEs: PostgreSQL's "Appendix A. PostgreSQL Error Codes".

use crate::SinkError;

/// What a PostgreSQL SQLSTATE says about the batch that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStateClass {
    /// The rows' data was refused, so the same rows will always be refused:
    /// - class `22` data exception: a NUL byte in text (`22021`), a value too long for
    ///   its column (`22001`), a number or timestamp out of range (`22003`, `22008`), …;
    /// - `54000` program_limit_exceeded: a btree key over 2704 bytes (index row size);
    /// - `23502` not_null_violation and `23514` check_violation: a column of one
    ///   record's row (a kind, a side, a non-positive amount) breaks the table's rule.
    Data,
    /// The environment failed and the same batch may go through later: class `08`
    /// connection exceptions, class `53` insufficient resources (too many connections,
    /// disk full, out of memory), `40001` serialization_failure, `40P01`
    /// deadlock_detected, `55P03` lock_not_available, `57P01`–`57P03` the server is
    /// shutting down or starting up.
    Transient,
    /// Anything else is about the sink, not one record: a unique or foreign-key
    /// violation (`23505`, `23503`, `23P01`, `23001`) can only come from rows the sink
    /// derives (sequence numbers, postings of the entries it inserted) or a second
    /// writer; class `42` is a schema or permission problem; `21000` a statement that
    /// touched a row twice. Dead-lettering would hide the bug: the sink stops.
    Fatal,
}

/// Classifies a five-character SQLSTATE (see [`SqlStateClass`] for the lists).
pub fn classify_sqlstate(code: &str) -> SqlStateClass {
    match code {
        "54000" | "23502" | "23514" => SqlStateClass::Data,
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" => SqlStateClass::Transient,
        _ if code.starts_with("22") => SqlStateClass::Data,
        _ if code.starts_with("08") || code.starts_with("53") => SqlStateClass::Transient,
        _ => SqlStateClass::Fatal,
    }
}

/// What the sink does when writing a batch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailureAction {
    /// Write the same batch again after a backoff (bounded).
    Retry,
    /// Split the rows being written to find the record(s) PostgreSQL refuses; dead-letter
    /// those and write the rest.
    Isolate,
    /// Stop the sink with the error.
    Stop,
}

/// The policy for a failed write of rows.
pub fn on_write_error(error: &SinkError) -> WriteFailureAction {
    if error.sqlstate_class() == Some(SqlStateClass::Data) {
        WriteFailureAction::Isolate
    } else if error.is_retriable() {
        WriteFailureAction::Retry
    } else {
        WriteFailureAction::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_exceptions_and_refused_values_are_the_records_fault() {
        for code in [
            "22021", // invalid byte sequence for encoding "UTF8": 0x00
            "22001", // value too long for type character(3)
            "22003", // bigint out of range
            "22008", // timestamp out of range
            "22P02", // invalid input syntax
            "22P05", // untranslatable character
            "54000", // index row size exceeds btree maximum 2704
            "23502", // not-null violation
            "23514", // check violation (kind, side, amount > 0)
        ] {
            assert_eq!(classify_sqlstate(code), SqlStateClass::Data, "{code}");
        }
    }

    #[test]
    fn environment_errors_are_retried() {
        for code in [
            "08000", "08001", "08003", "08004", "08006", "08P01", "40001", "40P01", "53300",
            "53100", "53200", "55P03", "57P01", "57P02", "57P03",
        ] {
            assert_eq!(classify_sqlstate(code), SqlStateClass::Transient, "{code}");
        }
    }

    #[test]
    fn violations_between_rows_and_schema_errors_stop_the_sink() {
        for code in [
            "23505", // unique violation: sequence numbers or postings the sink derived
            "23503", // foreign key violation
            "23P01", // exclusion violation
            "23001", // restrict violation
            "42P01", // undefined table: a missing migration
            "42501", // insufficient privilege
            "21000", // ON CONFLICT DO UPDATE touched a row twice
            "54001", // statement too complex: the sink's query, not a record
            "57P04", // database dropped
            "XX000", // internal error
        ] {
            assert_eq!(classify_sqlstate(code), SqlStateClass::Fatal, "{code}");
        }
    }

    /// A database error as PostgreSQL returns it: a message and a SQLSTATE.
    #[derive(Debug)]
    struct Refused(&'static str);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused with {}", self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn refused(code: &'static str) -> SinkError {
        SinkError::Database {
            context: "inserting journal entries",
            source: sqlx::Error::Database(Box::new(Refused(code))),
        }
    }

    #[test]
    fn a_refused_batch_is_isolated_retried_or_stops_by_its_sqlstate() {
        for code in ["22021", "54000", "23514", "22001"] {
            assert_eq!(
                on_write_error(&refused(code)),
                WriteFailureAction::Isolate,
                "{code}"
            );
            assert!(!refused(code).is_retriable(), "{code}");
        }
        for code in ["40001", "40P01", "57P01", "08006", "53300"] {
            assert_eq!(
                on_write_error(&refused(code)),
                WriteFailureAction::Retry,
                "{code}"
            );
        }
        for code in ["23505", "23503", "42P01"] {
            assert_eq!(
                on_write_error(&refused(code)),
                WriteFailureAction::Stop,
                "{code}"
            );
        }
        assert_eq!(refused("22021").sqlstate().as_deref(), Some("22021"));
    }

    #[test]
    fn only_database_errors_carrying_a_data_sqlstate_are_isolated() {
        let io = SinkError::Database {
            context: "test",
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(on_write_error(&io), WriteFailureAction::Retry);
        assert_eq!(io.sqlstate(), None);
        let configuration = SinkError::Database {
            context: "test",
            source: sqlx::Error::Configuration("bad".into()),
        };
        assert_eq!(on_write_error(&configuration), WriteFailureAction::Stop);
        let undecodable = SinkError::Undecodable {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            message: "x".into(),
        };
        assert_eq!(on_write_error(&undecodable), WriteFailureAction::Stop);
    }
}
