"""What Keras 3.15 does not get right when tf.distribute trains a model, made right for this app's runs
(core/distribute.py applies both, only in processes that train on several replicas): BatchNormalization's moving
statistics averaged across replicas, and two private functions of its TensorFlow trainer patched."""

from __future__ import annotations


def moving_statistics_sync(strategy):
    import keras
    import tensorflow as tf

    class SyncMovingStatistics(keras.callbacks.Callback):
        """BatchNormalization's moving mean and variance are updated by each replica from its own batches and never
        synchronised (Keras creates them with aggregation "none"; measured: two workers' statistics drift apart
        while their weights stay equal), and the model saved is the first replica's. Averaged over all replicas
        before each validation and at the end, they make one model again: the one every replica validates and the
        chief saves."""

        def on_train_begin(self, logs=None):
            self.moving = [v.value for v in self.model.non_trainable_variables
                           if v.name in ("moving_mean", "moving_variance")]

            @tf.function
            def averages():
                return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                    "MEAN", [tf.identity(v) for v in self.moving]))  # each replica's own copy
            self.averages = averages

        def on_test_begin(self, logs=None):
            self._synchronise()

        def on_train_end(self, logs=None):
            self._synchronise()

        def _synchronise(self):
            if self.moving:
                for variable, mean in zip(self.moving, self.averages(), strict=True):
                    variable.assign(strategy.experimental_local_results(mean)[0])

    return SyncMovingStatistics()


def work_around_keras_distributed_fit() -> None:
    """Keras 3.15's TensorFlow trainer fails in two places when it distributes `fit`, both about what it reads
    back, not how it trains:
    - before the first step of fit and of each validation it all-reduces a whole input batch only to learn its
      shapes, which fails whenever replicas hold batches of different sizes (a validation split of 10 images in
      batches of 8 on two replicas: 8 and 2) and always under MultiWorkerMirroredStrategy, whose reduce takes no
      nested structure (keras-team/keras#20585): the first replica's batch has the shapes it needs;
    - under MultiWorkerMirroredStrategy it reduces each step's logs with `axis=0`, which scalars do not have: a
      mean over all replicas is meant.
    Patched once per process, and only in processes that train on several replicas."""
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_face_insight_patched", False):
        return
    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction != "auto" or not trainer._collective_all_reduce_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def mean(value):
            scalar = strategy.experimental_local_results(value)[0].shape.rank == 0
            return strategy.reduce("MEAN", value, axis=None if scalar else 0)
        return tree.map_structure(mean, values)

    def maybe_symbolic_build(model, iterator=None, data_batch=None):
        if model._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: model.distribute_strategy.experimental_local_results(value)[0], next(batches))
                break
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer._face_insight_patched = True
