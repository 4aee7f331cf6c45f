//! Usage metering: per session × rating group and per session × monitoring key.
