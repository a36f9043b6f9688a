//! CRIU checkpoint archives: streaming reader, image decoding, model.
