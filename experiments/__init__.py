"""Entry points over dfka_tf: the runner, evaluation, serving and the experiment suites."""
