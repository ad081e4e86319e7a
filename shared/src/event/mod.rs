//! The TrackLayer event contract: message bodies to validated events or rejections.
