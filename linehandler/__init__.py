"""Line handler: A/B arbitration, gap detection, NACK recovery and late join, as a library and a daemon."""
