"""MONAI classifiers trained on real slices: label-preservation checks, domain features, the study."""

from medgan.classifier.model import Classifier, build_classifier
from medgan.classifier.train import TrainedClassifier, train_classifier

__all__ = ["Classifier", "TrainedClassifier", "build_classifier", "train_classifier"]
