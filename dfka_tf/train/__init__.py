"""What trains: one step per phase, the optimisers, Eq. 18's branch-out, the image sources."""
