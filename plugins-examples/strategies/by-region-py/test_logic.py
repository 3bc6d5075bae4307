import unittest

from logic import waves

NAMES = ["eu-west", "us-east", "ap-south"]
REGIONS = [0, 1, 2, 0, 1, 0]
ONLINE = [True, True, True, False, True, True]


class WavesTest(unittest.TestCase):
    def test_regions_go_in_the_order_given_then_by_name(self):
        planned = waves(REGIONS, NAMES, ONLINE, {"order": ["us-east"]})
        self.assertEqual([name for name, _ in planned], ["us-east", "ap-south", "eu-west"])
        self.assertEqual(planned[2][1], [0, 3, 5])

    def test_offline_devices_are_left_out_when_asked(self):
        planned = dict(waves(REGIONS, NAMES, ONLINE, {"skipOffline": True}))
        self.assertEqual(planned["eu-west"], [0, 5])

    def test_a_region_no_device_is_in_is_named(self):
        with self.assertRaisesRegex(ValueError, "mars"):
            waves(REGIONS, NAMES, ONLINE, {"order": ["mars"]})


if __name__ == "__main__":
    unittest.main()
