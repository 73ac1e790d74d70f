"""Running visionserve on distributed engines (Ray Serve); each needs its optional extra."""
