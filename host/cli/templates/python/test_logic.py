import unittest

from logic import waves


class WavesTest(unittest.TestCase):
    def test_every_device_is_planned_once_the_first_wave_first(self):
        planned = waves(1000, {"firstPercent": 10})
        self.assertEqual(len(planned), 2)
        self.assertEqual(len(planned[0]), 100)
        self.assertEqual(sorted(planned[0] + planned[1]), list(range(1000)))

    def test_a_bad_parameter_is_named(self):
        with self.assertRaisesRegex(ValueError, "firstPercent"):
            waves(10, {"firstPercent": 0})
        with self.assertRaisesRegex(ValueError, "firstPrecent"):
            waves(10, {"firstPrecent": 5})


if __name__ == "__main__":
    unittest.main()
