# Python imports this at start-up from PYTHONPATH (the tests put their folder there for
# every child process), so a run with KERASAFE_TEST_WITHOUT_TENSORFLOW=1 has no TensorFlow
# in the test process and in every subprocess it starts.
import os

if os.environ.get("KERASAFE_TEST_WITHOUT_TENSORFLOW") == "1":
    import hide_tensorflow

    hide_tensorflow.install()
