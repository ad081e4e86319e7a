"""TrackLayer's local stack (this folder, installed as ``tracklayer_local``): see README.md here."""
