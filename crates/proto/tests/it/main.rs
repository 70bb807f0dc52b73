//! `tollgate-proto` from the outside: properties of decoding wire messages and converting
//! them into domain values.

mod proptests;
